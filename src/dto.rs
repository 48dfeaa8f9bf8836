//! What crosses the wire between the server and the dashboard (server-function results).
//! Ids travel as strings; times as RFC 3339 strings; no secret is ever part of a DTO.

use crate::policy::{Plan, Role};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSummary {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub plan: Plan,
    /// The viewer's role; `None` for a platform admin looking at a workspace they are not in.
    pub role: Option<Role>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub platform_admin: bool,
    pub workspaces: Vec<WorkspaceSummary>,
    pub current: Option<WorkspaceSummary>,
}

/// Who is looking, as every page needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// No account exists yet: the first visitor sets the instance up.
    pub needs_setup: bool,
    /// The operator allows anyone to create an account (and a workspace) without an invitation.
    pub open_sign_up: bool,
    pub me: Option<Me>,
}

/// A workspace as the platform admin sees it on the workspaces page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminWorkspaceRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub plan: Plan,
    pub members: u32,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub is_you: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub expires_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersPage {
    pub workspace: WorkspaceSummary,
    pub members: Vec<MemberView>,
    pub invitations: Vec<InvitationView>,
    /// Whether the viewer may change members (owners); others see the page read-only.
    pub can_manage: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationPreview {
    pub workspace_name: String,
    pub email: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub current: bool,
    pub created_at: String,
    pub last_seen_at: String,
    pub user_agent: Option<String>,
}
