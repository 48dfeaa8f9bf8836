//! Account input rules: "parse, don't validate" newtypes for what people type in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountInputError {
    #[error("enter a valid email address")]
    Email,
    #[error("the password must be at least {MIN_PASSWORD} characters")]
    PasswordTooShort,
    #[error("the password must be at most {MAX_PASSWORD} characters")]
    PasswordTooLong,
    #[error("enter a name of 1 to 100 characters")]
    Name,
    #[error("workspace names are 1 to 80 characters")]
    WorkspaceName,
}

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 256;

/// A normalised email address: trimmed, lower-cased, one `@`, a dot in the domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AccountInputError> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or(AccountInputError::Email)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.len() >= 3
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@')
            && email.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if ok {
            Ok(Self(email))
        } else {
            Err(AccountInputError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a new password's length (NIST SP 800-63B: length, not composition rules).
pub fn check_new_password(password: &str) -> Result<(), AccountInputError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        Err(AccountInputError::PasswordTooShort)
    } else if n > MAX_PASSWORD {
        Err(AccountInputError::PasswordTooLong)
    } else {
        Ok(())
    }
}

pub fn parse_display_name(raw: &str) -> Result<String, AccountInputError> {
    let name = raw.trim();
    let n = name.chars().count();
    if (1..=100).contains(&n) && !name.chars().any(char::is_control) {
        Ok(name.to_string())
    } else {
        Err(AccountInputError::Name)
    }
}

pub fn parse_workspace_name(raw: &str) -> Result<String, AccountInputError> {
    let name = raw.trim();
    let n = name.chars().count();
    if (1..=80).contains(&n) && !name.chars().any(char::is_control) {
        Ok(name.to_string())
    } else {
        Err(AccountInputError::WorkspaceName)
    }
}

/// A URL slug from a name: lower-case ASCII letters, digits and single dashes, at most 40.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        "workspace".into()
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@com",
            "ada@@x.com",
            "a da@x.com",
            "ada@.x.com",
            "ada@x..com",
            "ada@x.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_length_not_symbols() {
        assert!(check_new_password("correct horse").is_ok());
        assert_eq!(
            check_new_password("short"),
            Err(AccountInputError::PasswordTooShort)
        );
        assert_eq!(
            check_new_password(&"x".repeat(257)),
            Err(AccountInputError::PasswordTooLong)
        );
        assert!(
            check_new_password("ääääääääää").is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn names_and_slugs() {
        assert_eq!(
            parse_display_name("  Ada Lovelace ").unwrap(),
            "Ada Lovelace"
        );
        assert!(parse_display_name("   ").is_err());
        assert!(parse_workspace_name(&"w".repeat(81)).is_err());
        assert_eq!(slugify("Acme Inc."), "acme-inc");
        assert_eq!(slugify("  Ünïcode -- Shop!! "), "n-code-shop");
        assert_eq!(slugify("!!!"), "workspace");
        assert!(slugify(&"a".repeat(100)).len() <= 40);
    }
}
