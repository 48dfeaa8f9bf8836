//! One module per page. Pages whose feature has not landed yet say what they will hold.

mod admin;
mod auth_pages;
mod dashboard;
mod members;
mod not_found;
mod profile;
mod upcoming;

pub use admin::AdminWorkspaces;
pub use auth_pages::{InvitePage, Setup, SignInPage, SignUpPage};
pub use dashboard::Dashboard;
pub use members::Members;
pub use not_found::NotFound;
pub use profile::Profile;
pub use upcoming::{Audit, Chatbots, Keys, Playground, Usage};
