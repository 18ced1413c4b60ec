//! Bearer tokens: how callers that hold no mesh certificate prove they may
//! use a closed endpoint (a Prometheus remote-writing into the store, an
//! operator searching the tap history, the CLI and dashboard calling the
//! controller in local mode).
//!
//! A token is 32 random bytes in hex, kept in a file readable by its owner
//! only and sent as `Authorization: Bearer <token>`. Comparison takes the
//! same time whatever the token sent, so the secret cannot be guessed a
//! byte at a time.

use std::io;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// A secret that callers must present.
#[derive(Clone)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A new random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        Self(crate::token::hex(&bytes))
    }

    /// The token in `path` (surrounding whitespace ignored).
    pub fn read(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no token", path.display()),
            ));
        }
        Ok(Self(token.to_string()))
    }

    /// Writes the token to `path`, readable by its owner only.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        writeln!(f, "{}", self.0)
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The `Authorization` header value that presents it.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn from_header(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        let t = BearerToken::generate();
        assert_eq!(t.secret().len(), 64);
        assert!(t.matches(t.secret()));
        assert!(!t.matches(&t.secret()[1..]));
        assert!(!t.matches(""));
        assert!(!BearerToken::generate().matches(t.secret()));
    }

    #[test]
    fn tokens_are_written_for_their_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let t = BearerToken::generate();
        t.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(BearerToken::read(&path).unwrap().matches(t.secret()));
        std::fs::write(&path, "\n").unwrap();
        assert!(
            BearerToken::read(&path).is_err(),
            "an empty file is no token"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_header_names_the_bearer_scheme() {
        assert_eq!(from_header("Bearer abc"), Some("abc"));
        assert_eq!(from_header("bearer  abc "), Some("abc"));
        assert_eq!(from_header("Basic abc"), None);
        assert_eq!(from_header("Bearer "), None);
        assert_eq!(from_header("abc"), None);
    }
}
