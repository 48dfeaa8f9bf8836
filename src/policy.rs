//! Who may do what: the one permission policy (DESIGN.md §6), as a pure function.
//!
//! The server's single guard resolves the actor (platform admin flag and the *current* role in
//! the target workspace, read from the database on every request) and asks [`can`]. Nothing else
//! decides permissions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A member's role in one workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Support,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Owner, Self::Admin, Self::Member, Self::Support];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Support => "support",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "Owner",
            Self::Admin => "Admin",
            Self::Member => "Member",
            Self::Support => "Support",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role: use owner, admin, member or support")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// A workspace's plan, set by the platform admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Pro,
    Business,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Self::Free, Self::Pro, Self::Business];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Business => "business",
        }
    }
}

impl FromStr for Plan {
    type Err = UnknownPlan;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(UnknownPlan)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan: use free, pro or business")]
pub struct UnknownPlan;

/// Something a signed-in user (or a visitor) wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// See providers, masked keys, status, last used.
    ViewKeys,
    /// Add, test, replace, disable, enable, delete workspace and chatbot keys.
    ManageKeys,
    /// Platform keys, BYOK switches, plans, credits, prices (instance-wide).
    ManagePlatform,
    /// Invite, change roles, remove members, transfer ownership, rename the workspace.
    ManageMembers,
    /// See the member list and pending invitations.
    ViewMembers,
    ManageChatbots,
    ManageApiTokens,
    ViewUsage,
    ViewAudit,
    /// Chat in the dashboard playground.
    Chat,
    /// Chat with a *public* chatbot (visitors included).
    ChatPublic,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Self::ViewKeys,
        Self::ManageKeys,
        Self::ManagePlatform,
        Self::ManageMembers,
        Self::ViewMembers,
        Self::ManageChatbots,
        Self::ManageApiTokens,
        Self::ViewUsage,
        Self::ViewAudit,
        Self::Chat,
        Self::ChatPublic,
    ];
}

/// Who is asking, as far as the policy needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Signed in at all (visitors are not).
    pub signed_in: bool,
    pub platform_admin: bool,
    /// The actor's role in the target workspace; `None` if not a member (or no workspace).
    pub role: Option<Role>,
}

impl Actor {
    pub const VISITOR: Actor = Actor {
        signed_in: false,
        platform_admin: false,
        role: None,
    };

    pub fn member(role: Role) -> Self {
        Actor {
            signed_in: true,
            platform_admin: false,
            role: Some(role),
        }
    }

    /// A workspace API token acting through the management API, in its own workspace only
    /// (the caller checks the workspace): with the `management` scope it acts as an admin — it
    /// manages chatbots and tokens and reads keys and usage, but never manages provider keys or
    /// members. Without that scope it is no actor there at all (`None`).
    pub fn token(management_scope: bool) -> Option<Self> {
        management_scope.then(|| Actor::member(Role::Admin))
    }
}

/// The permission policy. Platform admins see every workspace's keys, usage and audit log, but
/// do not manage a workspace's keys, members or chatbots unless they are also its owner/admin.
/// Nobody can read a plaintext key: there is no action for it.
pub fn can(actor: Actor, action: Action) -> bool {
    use Action::*;
    use Role::*;
    if action == ChatPublic {
        return true;
    }
    if !actor.signed_in {
        return false;
    }
    let admin = actor.platform_admin;
    match (action, actor.role) {
        (ManagePlatform, _) => admin,
        (ViewKeys | ViewUsage | ViewAudit | ViewMembers | Chat, Some(_)) => true,
        (ViewKeys | ViewUsage | ViewAudit | Chat, None) => admin,
        (ViewMembers, None) => admin,
        (ManageKeys | ManageMembers, Some(role)) => role == Owner,
        (ManageChatbots | ManageApiTokens, Some(role)) => matches!(role, Owner | Admin),
        (ManageKeys | ManageMembers | ManageChatbots | ManageApiTokens, None) => false,
        (ChatPublic, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    /// DESIGN.md §6, row by row: (action, platform admin, owner, admin, member, support, visitor).
    const TABLE: &[(Action, [bool; 6])] = &[
        (ViewKeys, [true, true, true, true, true, false]),
        (ManageKeys, [false, true, false, false, false, false]),
        (ManagePlatform, [true, false, false, false, false, false]),
        (ManageMembers, [false, true, false, false, false, false]),
        (ViewMembers, [true, true, true, true, true, false]),
        (ManageChatbots, [false, true, true, false, false, false]),
        (ManageApiTokens, [false, true, true, false, false, false]),
        (ViewUsage, [true, true, true, true, true, false]),
        (ViewAudit, [true, true, true, true, true, false]),
        (Chat, [true, true, true, true, true, false]),
        (ChatPublic, [true, true, true, true, true, true]),
    ];

    fn columns() -> [Actor; 6] {
        [
            Actor {
                signed_in: true,
                platform_admin: true,
                role: None,
            },
            Actor::member(Role::Owner),
            Actor::member(Role::Admin),
            Actor::member(Role::Member),
            Actor::member(Role::Support),
            Actor::VISITOR,
        ]
    }

    #[test]
    fn every_cell_of_the_design_table() {
        assert_eq!(TABLE.len(), Action::ALL.len(), "every action has a row");
        for (action, row) in TABLE {
            for (actor, expected) in columns().into_iter().zip(row) {
                assert_eq!(can(actor, *action), *expected, "{action:?} for {actor:?}");
            }
        }
    }

    #[test]
    fn a_management_token_acts_as_an_admin_and_never_manages_keys_or_members() {
        assert_eq!(Actor::token(false), None);
        let token = Actor::token(true).expect("management scope");
        assert!(!token.platform_admin);
        for action in Action::ALL {
            let expected = !matches!(action, ManageKeys | ManageMembers | ManagePlatform);
            assert_eq!(can(token, action), expected, "{action:?}");
        }
    }

    #[test]
    fn a_signed_in_non_member_can_do_nothing_in_the_workspace() {
        let outsider = Actor {
            signed_in: true,
            platform_admin: false,
            role: None,
        };
        for action in Action::ALL {
            assert_eq!(can(outsider, action), action == ChatPublic, "{action:?}");
        }
    }

    #[test]
    fn a_platform_admin_who_owns_a_workspace_manages_it() {
        let both = Actor {
            signed_in: true,
            platform_admin: true,
            role: Some(Role::Owner),
        };
        for action in Action::ALL {
            assert!(can(both, action), "{action:?}");
        }
    }

    #[test]
    fn a_role_field_cannot_sneak_past_sign_in() {
        let forged = Actor {
            signed_in: false,
            platform_admin: true,
            role: Some(Role::Owner),
        };
        for action in Action::ALL {
            assert_eq!(can(forged, action), action == ChatPublic, "{action:?}");
        }
    }

    #[test]
    fn roles_and_plans_parse_only_known_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("Owner".parse::<Role>().is_err());
        assert!("superuser".parse::<Role>().is_err());
        for p in Plan::ALL {
            assert_eq!(p.as_str().parse::<Plan>(), Ok(p));
        }
        assert!("enterprise".parse::<Plan>().is_err());
    }
}
