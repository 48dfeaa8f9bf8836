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

/// What the sign-up confirmation page shows before the account is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUpPreview {
    pub email: String,
    pub workspace_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub current: bool,
    pub created_at: String,
    pub last_seen_at: String,
    pub user_agent: Option<String>,
}

/// A provider as the dashboard shows it: catalogue defaults merged with the platform admin's
/// overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub id: String,
    pub name: String,
    /// Effective base URL (`None` for Custom: each key brings its own).
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    /// Where to create a key, from the catalogue.
    pub key_url: Option<String>,
    /// What keys look like, e.g. `starts with "gsk_"`; `None` where providers publish no shape.
    pub key_shape: Option<String>,
    /// The platform's per-provider BYOK switch.
    pub byok_enabled: bool,
    /// Whether the admin changed the base URL or default model.
    pub overridden: bool,
}

/// One stored key, masked. Never carries the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub provider: String,
    pub hint: String,
    pub state: crate::keys::KeyState,
    pub default_model: Option<String>,
    /// The owner-given base URL (Custom only).
    pub base_url: Option<String>,
    /// Where this key is sent: the host (and port) it was bound to when it was added or
    /// replaced. An admin's later base-URL change never moves it.
    pub destination: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
    pub last_tested_at: Option<String>,
    pub last_error: Option<KeyErrorView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyErrorView {
    pub class: crate::keys::ErrorClass,
    pub message: String,
    pub at: String,
}

/// A row of the keys page: a provider and this scope's key for it, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub provider: ProviderInfo,
    pub key: Option<KeyView>,
    /// Whether this scope may use its own key for the provider right now (BYOK switches and
    /// plan); always true for platform keys.
    pub byok_allowed: bool,
}

/// The keys page of one scope (a workspace, or the platform).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysPage {
    /// `None` for the platform's keys.
    pub workspace: Option<WorkspaceSummary>,
    pub rows: Vec<KeyRow>,
    /// Owners (platform admins for platform keys) see controls; everyone else a read-only page.
    pub can_manage: bool,
    pub failure_policy: crate::keys::FailurePolicy,
    /// Whether this workspace's plan may bring its own keys at all.
    pub plan_allows_byok: bool,
}

/// The outcome of a live test of a key against its provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTestResult {
    pub ok: bool,
    pub class: Option<crate::keys::ErrorClass>,
    /// A short explanation for the owner; never the key, never a raw provider body.
    pub message: String,
    pub latency_ms: u32,
}

/// The platform admin's provider settings page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformProviders {
    pub providers: Vec<ProviderInfo>,
    /// Plans whose workspaces may bring their own keys.
    pub byok_plans: Vec<Plan>,
}

/// One audit-log entry. Carries provider and masked hints only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    pub provider: Option<String>,
    pub hint: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Substring of the actor's email.
    pub actor: Option<String>,
    /// An action name or its prefix (`key.` for every key event).
    pub action: Option<String>,
    pub provider: Option<String>,
    /// Inclusive dates, `YYYY-MM-DD`.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// More entries match than were returned.
    pub truncated: bool,
}

/// A model a workspace (or one of its chatbots) can use now, labelled by the key source that
/// would serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOption {
    pub provider: String,
    pub model: String,
    pub source: crate::resolve::KeySource,
    /// The key's or provider's default model.
    pub default: bool,
}

/// A chatbot as its workspace's dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatbotView {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub provider: String,
    pub model: Option<String>,
    pub public: bool,
    pub system_prompt: String,
    pub greeting: String,
    pub temperature: f64,
    pub max_tokens: u32,
    /// `provider/model` ids visitors may switch to.
    pub allowed_models: Vec<String>,
    /// Messages per day across all visitors (0: no cap).
    pub daily_cap: u32,
    /// Origins whose pages may embed the public chat page (empty: none).
    #[serde(default)]
    pub allowed_sites: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatbotsPage {
    pub workspace: WorkspaceSummary,
    pub chatbots: Vec<ChatbotView>,
    /// Owners and admins manage chatbots.
    pub can_manage: bool,
}

/// Everything an owner or admin can change on a chatbot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatbotUpdate {
    pub name: String,
    pub provider: String,
    /// Empty: the key's or provider's default.
    pub model: String,
    pub system_prompt: String,
    pub greeting: String,
    pub temperature: f64,
    pub max_tokens: u32,
    pub public: bool,
    /// `provider/model` ids visitors may switch to for one message.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Visitor messages per day (UTC) across all visitors; 0: no cap.
    pub daily_cap: u32,
    /// Origins (`https://www.example.com`, `https://*.example.com`) whose pages may embed the
    /// public chat page in a frame. Empty: no site may.
    #[serde(default)]
    pub allowed_sites: Vec<String>,
}
