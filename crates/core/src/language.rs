//! The languages we can instrument, with their operator-compatible names.

use serde::{Deserialize, Serialize};

/// A language the OpenTelemetry Operator can inject, keyed as in its
/// `instrumentation.opentelemetry.io/inject-<key>` annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Language {
    Java,
    Nodejs,
    Php,
    Python,
    Ruby,
    Dotnet,
    Go,
    ApacheHttpd,
    Nginx,
    /// SDK env vars only, no agent.
    Sdk,
}

/// What a rule may ask for: a language, or detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LanguageChoice {
    Java,
    Nodejs,
    Php,
    Python,
    Ruby,
    Dotnet,
    Go,
    ApacheHttpd,
    Nginx,
    Sdk,
    /// Detect the language from image, command, args and env.
    Auto,
}

// === impl Language ===

impl Language {
    /// In the operator's injection order (PHP after Node.js, Ruby after Python).
    pub const ALL: [Language; 10] = [
        Self::Java,
        Self::Nodejs,
        Self::Php,
        Self::Python,
        Self::Ruby,
        Self::Dotnet,
        Self::Go,
        Self::ApacheHttpd,
        Self::Nginx,
        Self::Sdk,
    ];

    /// The field of the Instrumentation's spec (`spec.apacheHttpd`), for
    /// error paths.
    pub fn spec_field(self) -> &'static str {
        match self {
            Self::ApacheHttpd => "apacheHttpd",
            other => other.key(),
        }
    }

    /// The key in annotation names and metric labels.
    pub fn key(self) -> &'static str {
        match self {
            Self::Java => "java",
            Self::Nodejs => "nodejs",
            Self::Php => "php",
            Self::Python => "python",
            Self::Ruby => "ruby",
            Self::Dotnet => "dotnet",
            Self::Go => "go",
            Self::ApacheHttpd => "apache-httpd",
            Self::Nginx => "nginx",
            Self::Sdk => "sdk",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl LanguageChoice {
    pub fn language(self) -> Option<Language> {
        Some(match self {
            Self::Java => Language::Java,
            Self::Nodejs => Language::Nodejs,
            Self::Php => Language::Php,
            Self::Python => Language::Python,
            Self::Ruby => Language::Ruby,
            Self::Dotnet => Language::Dotnet,
            Self::Go => Language::Go,
            Self::ApacheHttpd => Language::ApacheHttpd,
            Self::Nginx => Language::Nginx,
            Self::Sdk => Language::Sdk,
            Self::Auto => return None,
        })
    }
}
