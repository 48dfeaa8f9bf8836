//! One module per page.

mod admin;
mod audit;
mod auth_pages;
mod chat;
mod chatbots;
mod credits;
mod dashboard;
mod keys;
mod limits;
mod members;
mod not_found;
mod profile;
mod providers;
mod tokens;
mod usage;

pub use admin::AdminWorkspaces;
pub use audit::{Audit, PlatformAudit};
pub use auth_pages::{ConfirmSignUpPage, InvitePage, Setup, SignInPage, SignUpPage};
pub use chat::{Playground, VisitorChat};
pub use chatbots::{ChatbotKeys, Chatbots};
pub use credits::AdminCredits;
pub use dashboard::Dashboard;
pub use keys::{Keys, PlatformKeys};
pub use limits::{AdminLimits, LimitsPage};
pub use members::Members;
pub use not_found::NotFound;
pub use profile::Profile;
pub use providers::AdminProviders;
pub use tokens::Tokens;
pub use usage::{AdminUsage, Usage};
