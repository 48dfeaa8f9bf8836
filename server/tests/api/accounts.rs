//! Accounts, sessions, workspaces, members and invitations at the service level, and the one
//! guard over every role × action — on SQLite and PostgreSQL.

use crate::helpers::{Backend, TestVault, both_backends, open_vault};
use keyward::policy::{Action, Plan, Role};
use keyward_server::auth::authorize;
use keyward_server::entities::{invitation, membership, session};
use keyward_server::error::ServiceError;
use keyward_server::services::accounts::{self, SessionUser, SignInThrottle};
use keyward_server::services::audit::By;
use keyward_server::services::{sign_up, workspaces};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, PaginatorTrait, Set};
use std::time::Duration;
use uuid::Uuid;

const PW: &str = "correct horse battery";

struct World {
    t: TestVault,
    throttle: SignInThrottle,
    owner: SessionUser,
    ws: Uuid,
}

async fn sign_in(w: &World, email: &str) -> SessionUser {
    user(&w.t.db, &w.throttle, email).await
}

/// Signs in with the test password: the session's user.
async fn user(db: &DatabaseConnection, throttle: &SignInThrottle, email: &str) -> SessionUser {
    accounts::sign_in(db, throttle, email, PW, None, None, None)
        .await
        .unwrap()
        .user
}

/// Whether a session token is live.
async fn live(db: &DatabaseConnection, token: &str) -> bool {
    accounts::authenticate(db, token).await.unwrap().is_some()
}

/// A new session of the owner.
async fn owner_session(w: &World) -> accounts::NewSession {
    accounts::sign_in(
        &w.t.db,
        &w.throttle,
        "owner@example.com",
        PW,
        None,
        None,
        None,
    )
    .await
    .unwrap()
}

/// A session's stored row.
async fn session_row(db: &DatabaseConnection, hash: String) -> session::Model {
    session::Entity::find_by_id(hash)
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

/// Invites `email` to `ws` as `role` (by the operator): the invitation's id and token.
async fn invite(
    db: &DatabaseConnection,
    ws: Uuid,
    email: &str,
    role: Role,
) -> (Uuid, zeroize::Zeroizing<String>) {
    workspaces::invite(db, &By::cli(), ws, email, role)
        .await
        .unwrap()
}

/// Signs up through an invitation token.
async fn join(db: &DatabaseConnection, token: &str, name: &str) -> Result<(), ServiceError> {
    let throttle = SignInThrottle::new(100, 100);
    workspaces::sign_up_with_invitation(db, &throttle, None, token, name, PW)
        .await
        .map(drop)
}

/// A set-up instance with one workspace and a member of every role, plus an outsider who owns
/// another workspace.
async fn world(backend: Backend) -> (World, Vec<(Role, SessionUser)>, SessionUser, Uuid) {
    let t = open_vault(backend).await;
    let (_, ws) = accounts::setup_first_user(
        &t.db,
        &SignInThrottle::new(100, 100),
        "Owner@Example.com",
        "Olive Owner",
        PW,
        "Acme",
    )
    .await
    .unwrap();
    let throttle = SignInThrottle::new(1000, 1000);
    let owner = user(&t.db, &throttle, "owner@example.com").await;
    let w = World {
        t,
        throttle,
        owner,
        ws: ws.id,
    };
    let mut people = vec![(Role::Owner, w.owner.clone())];
    for role in [Role::Admin, Role::Member, Role::Support] {
        let email = format!("{role}@example.com");
        let (_, token) = invite(&w.t.db, w.ws, &email, role).await;
        join(&w.t.db, &token, role.label()).await.unwrap();
        people.push((role, sign_in(&w, &email).await));
    }
    // An outsider: platform-less user owning a workspace of their own.
    let (_, token) = invite(&w.t.db, w.ws, "eve@example.com", Role::Member).await;
    join(&w.t.db, &token, "Eve").await.unwrap();
    let eve = sign_in(&w, "eve@example.com").await;
    workspaces::remove_member(&w.t.db, &By::cli(), w.ws, eve.user_id)
        .await
        .unwrap();
    let other = workspaces::create(&w.t.db, &eve, "Eve's shop")
        .await
        .unwrap();
    (w, people, eve, other.id)
}

async fn first_run_setup_happens_once(backend: Backend) {
    let t = open_vault(backend).await;
    assert!(accounts::needs_setup(&t.db).await.unwrap());
    let (user, ws) = accounts::setup_first_user(
        &t.db,
        &SignInThrottle::new(100, 100),
        " Ada@Example.COM ",
        "Ada",
        PW,
        "Acme Inc.",
    )
    .await
    .unwrap();
    assert!(user.platform_admin);
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(ws.slug, "acme-inc");
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    let m = membership::Entity::find_by_id((ws.id, user.id))
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.role, "owner");
    let again = accounts::setup_first_user(
        &t.db,
        &SignInThrottle::new(100, 100),
        "mallory@example.com",
        "M",
        PW,
        "X",
    )
    .await;
    assert!(matches!(again, Err(ServiceError::Conflict(_))));
    assert!(!accounts::needs_setup(&t.db).await.unwrap());
    // Bad input is refused with a message that does not echo the password.
    let t2 = open_vault(backend).await;
    match accounts::setup_first_user(
        &t2.db,
        &SignInThrottle::new(100, 100),
        "ada@example.com",
        "Ada",
        "short",
        "Acme",
    )
    .await
    {
        Err(ServiceError::Invalid(m)) => assert!(m.contains("at least 10") && !m.contains("short")),
        other => panic!("{other:?}"),
    }
}
both_backends!(
    first_run_setup_happens_once,
    super::first_run_setup_happens_once
);

async fn sessions_rotate_expire_and_end(backend: Backend) {
    let (w, _, _, _) = world(backend).await;
    let db = &w.t.db;
    let first = accounts::sign_in(
        db,
        &w.throttle,
        "owner@example.com",
        PW,
        None,
        Some("ua"),
        None,
    )
    .await
    .unwrap();
    assert!(live(db, &first.token).await);
    // Signing in again from the same browser replaces the session id.
    let second = accounts::sign_in(
        db,
        &w.throttle,
        "owner@example.com",
        PW,
        None,
        None,
        Some(&first.token),
    )
    .await
    .unwrap();
    assert_ne!(*first.token, *second.token);
    assert!(!live(db, &first.token).await, "old id is dead");
    // Only the hash is stored.
    let stored = session_row(db, second.user.session_hash.clone()).await;
    assert_ne!(stored.id_hash, *second.token);
    // Sign-out deletes the row server-side.
    accounts::sign_out(db, &second.token).await.unwrap();
    assert!(!live(db, &second.token).await);
    // Idle and absolute expiry.
    let s = owner_session(&w).await;
    let row = session_row(db, s.user.session_hash.clone()).await;
    let mut am: session::ActiveModel = row.clone().into();
    am.last_seen_at =
        Set(chrono::Utc::now() - accounts::IDLE_TIMEOUT - chrono::Duration::seconds(1));
    am.update(db).await.unwrap();
    assert!(!live(db, &s.token).await, "idle");
    let s = owner_session(&w).await;
    let row = session_row(db, s.user.session_hash.clone()).await;
    let mut am: session::ActiveModel = row.into();
    am.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
    am.update(db).await.unwrap();
    assert!(!live(db, &s.token).await, "absolute");
    // Sign out everywhere, and a password change ends the other sessions.
    let a = owner_session(&w).await;
    let b = owner_session(&w).await;
    accounts::change_password(db, &w.throttle, &a.user, PW, "a brand new passphrase")
        .await
        .unwrap();
    assert!(live(db, &a.token).await, "current kept");
    assert!(!live(db, &b.token).await, "others ended");
    assert!(
        accounts::sign_in(db, &w.throttle, "owner@example.com", PW, None, None, None)
            .await
            .is_err()
    );
    accounts::sign_out_everywhere(db, a.user.user_id, None)
        .await
        .unwrap();
    assert!(!live(db, &a.token).await);
}
both_backends!(
    sessions_rotate_expire_and_end,
    super::sessions_rotate_expire_and_end
);

async fn sign_in_is_throttled_per_account_and_address(backend: Backend) {
    let (w, _, _, _) = world(backend).await;
    let db = &w.t.db;
    let strict = SignInThrottle::new(3, 5);
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    for _ in 0..3 {
        let r = accounts::sign_in(
            db,
            &strict,
            "owner@example.com",
            "wrong password!",
            Some(ip),
            None,
            None,
        )
        .await;
        assert!(matches!(r, Err(ServiceError::Invalid(_))));
    }
    match accounts::sign_in(db, &strict, "owner@example.com", PW, Some(ip), None, None).await {
        Err(ServiceError::RateLimited(secs)) => assert!((1..=60).contains(&secs), "{secs}"),
        other => panic!("expected throttling, got {:?}", other.map(|s| s.user)),
    }
    // Another account from the same address: the per-address budget (5) still has room for one,
    // then it is spent.
    assert!(
        accounts::sign_in(db, &strict, "admin@example.com", PW, Some(ip), None, None)
            .await
            .is_ok()
    );
    assert!(matches!(
        accounts::sign_in(db, &strict, "member@example.com", PW, Some(ip), None, None).await,
        Err(ServiceError::RateLimited(_))
    ));
    // Unknown accounts get the same generic answer as wrong passwords.
    let lax = SignInThrottle::new(100, 100);
    match accounts::sign_in(db, &lax, "nobody@example.com", PW, None, None, None).await {
        Err(ServiceError::Invalid(m)) => assert_eq!(m, "the email or password is not correct"),
        other => panic!("{:?}", other.map(|s| s.user)),
    }
}
both_backends!(
    sign_in_is_throttled_per_account_and_address,
    super::sign_in_is_throttled_per_account_and_address
);

async fn the_guard_applies_the_table_to_every_role(backend: Backend) {
    let (w, people, eve, eve_ws) = world(backend).await;
    let db = &w.t.db;
    assert!(people[0].1.platform_admin && !people[1].1.platform_admin);
    for (role, person) in &people {
        for action in Action::ALL {
            let actor = keyward::policy::Actor {
                signed_in: true,
                platform_admin: person.platform_admin,
                role: Some(*role),
            };
            let expected = keyward::policy::can(actor, action);
            let got = authorize(db, Some(person), w.ws, action).await;
            assert_eq!(got.is_ok(), expected, "{role:?} {action:?}");
            if !expected && action != Action::ChatPublic {
                assert!(
                    matches!(got, Err(ServiceError::Forbidden)),
                    "{role:?} {action:?}"
                );
            }
        }
    }
    // Anonymous: 401 for everything.
    for action in Action::ALL {
        assert!(matches!(
            authorize(db, None, w.ws, action).await,
            Err(ServiceError::Unauthorized)
        ));
    }
    // Another tenant's member asks for this workspace: it does not exist for them (404).
    for action in Action::ALL {
        if action == Action::ChatPublic {
            continue;
        }
        assert!(matches!(
            authorize(db, Some(&eve), w.ws, action).await,
            Err(ServiceError::NotFound)
        ));
    }
    // The platform admin (the first user) sees another tenant's workspace but cannot manage it.
    assert!(
        authorize(db, Some(&w.owner), eve_ws, Action::ViewUsage)
            .await
            .is_ok()
    );
    assert!(matches!(
        authorize(db, Some(&w.owner), eve_ws, Action::ManageKeys).await,
        Err(ServiceError::Forbidden)
    ));
    // Unknown workspace ids answer 404 too.
    assert!(matches!(
        authorize(db, Some(&w.owner), Uuid::new_v4(), Action::ViewKeys).await,
        Err(ServiceError::NotFound)
    ));
}
both_backends!(
    the_guard_applies_the_table_to_every_role,
    super::the_guard_applies_the_table_to_every_role
);

async fn demotion_and_removal_apply_on_the_next_request(backend: Backend) {
    let (w, people, _, _) = world(backend).await;
    let db = &w.t.db;
    let admin = &people.iter().find(|(r, _)| *r == Role::Admin).unwrap().1;
    assert!(
        authorize(db, Some(admin), w.ws, Action::ManageChatbots)
            .await
            .is_ok()
    );
    workspaces::change_role(db, &By::cli(), w.ws, admin.user_id, Role::Member)
        .await
        .unwrap();
    // Same session object, very next check: the new role applies.
    assert!(matches!(
        authorize(db, Some(admin), w.ws, Action::ManageChatbots).await,
        Err(ServiceError::Forbidden)
    ));
    workspaces::remove_member(db, &By::cli(), w.ws, admin.user_id)
        .await
        .unwrap();
    assert!(matches!(
        authorize(db, Some(admin), w.ws, Action::ViewKeys).await,
        Err(ServiceError::NotFound)
    ));
}
both_backends!(
    demotion_and_removal_apply_on_the_next_request,
    super::demotion_and_removal_apply_on_the_next_request
);

async fn a_workspace_always_keeps_an_owner(backend: Backend) {
    let (w, people, _, _) = world(backend).await;
    let db = &w.t.db;
    let owner = w.owner.user_id;
    assert!(matches!(
        workspaces::change_role(db, &By::cli(), w.ws, owner, Role::Admin).await,
        Err(ServiceError::Conflict(_))
    ));
    assert!(matches!(
        workspaces::remove_member(db, &By::cli(), w.ws, owner).await,
        Err(ServiceError::Conflict(_))
    ));
    let member = &people.iter().find(|(r, _)| *r == Role::Member).unwrap().1;
    workspaces::transfer_ownership(db, &By::cli(), w.ws, owner, member.user_id)
        .await
        .unwrap();
    let roles: Vec<(Uuid, Role)> = workspaces::members(db, w.ws)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert!(roles.contains(&(member.user_id, Role::Owner)));
    assert!(roles.contains(&(owner, Role::Admin)));
    // Now the former owner can be demoted further, the new owner cannot.
    workspaces::change_role(db, &By::cli(), w.ws, owner, Role::Member)
        .await
        .unwrap();
    assert!(matches!(
        workspaces::change_role(db, &By::cli(), w.ws, member.user_id, Role::Support).await,
        Err(ServiceError::Conflict(_))
    ));
    // Plans are set per workspace.
    workspaces::set_plan(db, &w.t.changes, &By::cli(), w.ws, Plan::Business)
        .await
        .unwrap();
    assert_eq!(workspaces::get(db, w.ws).await.unwrap().plan, "business");
}
both_backends!(
    a_workspace_always_keeps_an_owner,
    super::a_workspace_always_keeps_an_owner
);

async fn invitations_are_single_use_and_expire(backend: Backend) {
    let (w, _, eve, _) = world(backend).await;
    let db = &w.t.db;
    let (id, token) = invite(db, w.ws, "eve@example.com", Role::Support).await;
    assert_eq!(
        workspaces::pending_invitations(db, w.ws)
            .await
            .unwrap()
            .len(),
        1
    );
    let joined = workspaces::accept_invitation(db, &token, &eve)
        .await
        .unwrap();
    assert_eq!(joined, w.ws);
    assert!(
        matches!(
            workspaces::accept_invitation(db, &token, &eve).await,
            Err(ServiceError::NotFound)
        ),
        "single use"
    );
    assert!(matches!(
        workspaces::invitation_info(db, &token).await,
        Err(ServiceError::NotFound)
    ));
    let _ = id;

    // Addressed to someone else: refused.
    let (_, for_bob) = invite(db, w.ws, "bob@example.com", Role::Member).await;
    let outsider = user(db, &w.throttle, "eve@example.com").await;
    assert!(matches!(
        workspaces::accept_invitation(db, &for_bob, &outsider).await,
        Err(ServiceError::Forbidden)
    ));

    // Expired.
    let (exp_id, expiring) = invite(db, w.ws, "carol@example.com", Role::Member).await;
    let row = invitation::Entity::find_by_id(exp_id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mut am: invitation::ActiveModel = row.into();
    am.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
    am.update(db).await.unwrap();
    assert!(matches!(
        join(db, &expiring, "Carol").await,
        Err(ServiceError::NotFound)
    ));
    // Revoked.
    let (rev_id, revoked) = invite(db, w.ws, "dan@example.com", Role::Member).await;
    workspaces::revoke_invitation(db, &By::cli(), w.ws, rev_id)
        .await
        .unwrap();
    assert!(join(db, &revoked, "Dan").await.is_err());
    // Tokens are stored hashed.
    let stored = invitation::Entity::find_by_id(rev_id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.token_hash, *revoked);
    // Revoking another workspace's invitation id from this workspace: not found, nothing changes.
    assert!(matches!(
        workspaces::revoke_invitation(db, &By::cli(), Uuid::new_v4(), exp_id).await,
        Err(ServiceError::NotFound)
    ));
    assert_eq!(membership::Entity::find().count(db).await.unwrap(), 6);
}
both_backends!(
    invitations_are_single_use_and_expire,
    super::invitations_are_single_use_and_expire
);

async fn platform_admin_actions_are_theirs_alone(backend: Backend) {
    let (w, people, eve, eve_ws) = world(backend).await;
    let db = &w.t.db;
    assert!(
        keyward_server::auth::authorize_platform(db, Some(&w.owner))
            .await
            .is_ok()
    );
    for (_, person) in people.iter().skip(1) {
        assert!(matches!(
            keyward_server::auth::authorize_platform(db, Some(person)).await,
            Err(ServiceError::Forbidden)
        ));
    }
    assert!(matches!(
        keyward_server::auth::authorize_platform(db, Some(&eve)).await,
        Err(ServiceError::Forbidden)
    ));
    assert!(matches!(
        keyward_server::auth::authorize_platform(db, None).await,
        Err(ServiceError::Unauthorized)
    ));
    let all = workspaces::list_all(db).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|(ws, n)| ws.id == w.ws && *n == 4));
    assert!(all.iter().any(|(ws, n)| ws.id == eve_ws && *n == 1));
}
both_backends!(
    platform_admin_actions_are_theirs_alone,
    super::platform_admin_actions_are_theirs_alone
);

/// Password hashing is no free CPU and memory sink: set-up refuses before hashing, a few
/// hashes run at once, argon2 never holds the write lock, password changes are throttled.
async fn password_work_is_bounded(backend: Backend) {
    use keyward_server::services::accounts::{NewAccount, SetupForm};
    let (w, _, _, _) = world(backend).await;
    let db = &w.t.db;
    // No hashing slot at all: any attempt to hash would wait, then be told to retry.
    let no_slots = SignInThrottle::with_hash_slots(100, 100, 0, Duration::from_millis(300));
    // A set-up instance refuses set-up before any password work.
    let again = accounts::setup_first_user(db, &no_slots, "new@example.com", "New", PW, "X").await;
    assert!(matches!(again, Err(ServiceError::Conflict(_))), "{again:?}");
    let form = || SetupForm {
        email: "new@example.com",
        display_name: "New",
        password: PW,
        workspace_name: "X",
    };
    let web = accounts::setup_with_token(db, &no_slots, None, "anything", form()).await;
    assert!(matches!(web, Err(ServiceError::Conflict(_))), "{web:?}");
    assert_eq!(no_slots.peak_hashing(), 0, "no hash ran");
    assert!(accounts::new_setup_token(db).await.unwrap().is_none());
    // With no slot free, work queues and is then refused with a retry hint (not piled up).
    let busy = NewAccount::prepare(&no_slots, "q@example.com", "Q", PW).await;
    assert!(
        matches!(busy, Err(ServiceError::RateLimited(_))),
        "{}",
        busy.is_ok()
    );

    // At most `slots` hashes run at once, however many arrive.
    let two = SignInThrottle::with_hash_slots(1000, 1000, 2, Duration::from_secs(60));
    let attempts = (0..6).map(|i| {
        let two = two.clone();
        let db = db.clone();
        async move {
            let email = if i % 2 == 0 {
                "owner@example.com"
            } else {
                "nobody@example.com"
            };
            accounts::sign_in(&db, &two, email, "wrong password!", None, None, None).await
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(ServiceError::Invalid(_))))
    );
    assert!(
        two.peak_hashing() >= 1 && two.peak_hashing() <= two.hash_slots(),
        "peak {}",
        two.peak_hashing()
    );

    // Argon2 never runs under the write lock: a sign-up waiting for its hash does not hold
    // back another writer. The writer commits while the sign-up is still hashing.
    let slow = SignInThrottle::with_hash_slots(100, 100, 0, Duration::from_millis(1500));
    let signing_up = {
        let (db, slow) = (db.clone(), slow.clone());
        tokio::spawn(async move {
            let form = sign_up::SignUpForm {
                email: "late@example.com",
                display_name: "L",
                password: PW,
                workspace_name: "L",
            };
            sign_up::request(&db, &slow, &nowhere_mail(), None, form).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let txn = keyward_server::db::begin_write(db).await.unwrap();
    accounts::insert_workspace(&txn, "Written meanwhile", w.owner.user_id)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(
        !signing_up.is_finished(),
        "the write did not wait for the hash"
    );
    let late = signing_up.await.unwrap();
    assert!(
        matches!(late, Err(ServiceError::RateLimited(_))),
        "{}",
        late.is_ok()
    );

    // Password changes are throttled per user, wrong guesses included.
    let mut refused = None;
    for i in 0..8 {
        match accounts::change_password(
            db,
            &w.throttle,
            &w.owner,
            "not the password",
            "x new passphrase",
        )
        .await
        {
            Err(ServiceError::RateLimited(s)) => {
                refused = Some((i, s));
                break;
            }
            Err(ServiceError::Invalid(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let (after, _) = refused.expect("throttled");
    assert_eq!(after, 5, "five tries a minute");
}
both_backends!(password_work_is_bounded, super::password_work_is_bounded);

/// Two owners demoting (or removing) each other at the same moment never leave the workspace
/// without an owner: on PostgreSQL the owner rows are locked, so the second change sees the
/// first.
async fn concurrent_demotions_keep_an_owner(backend: Backend) {
    let (w, people, _, _) = world(backend).await;
    let a = w.owner.user_id;
    let b = people
        .iter()
        .find(|(r, _)| *r == Role::Admin)
        .unwrap()
        .1
        .user_id;
    let owners = || async {
        membership::Entity::find()
            .all(&w.t.db)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.workspace_id == w.ws && m.role == "owner")
            .count()
    };
    let mut refused = 0;
    for round in 0..12 {
        workspaces::change_role(&w.t.db, &By::cli(), w.ws, b, Role::Owner)
            .await
            .unwrap();
        workspaces::change_role(&w.t.db, &By::cli(), w.ws, a, Role::Owner)
            .await
            .unwrap();
        assert_eq!(owners().await, 2);
        let (db1, db2, ws) = (w.t.db.clone(), w.t.db.clone(), w.ws);
        let (x, y) = if round % 2 == 0 {
            let one = tokio::spawn(async move {
                workspaces::change_role(&db1, &By::cli(), ws, a, Role::Admin).await
            });
            let two = tokio::spawn(async move {
                workspaces::change_role(&db2, &By::cli(), ws, b, Role::Admin).await
            });
            (one.await.unwrap(), two.await.unwrap())
        } else {
            let one =
                tokio::spawn(
                    async move { workspaces::remove_member(&db1, &By::cli(), ws, a).await },
                );
            let two = tokio::spawn(async move {
                workspaces::change_role(&db2, &By::cli(), ws, b, Role::Member).await
            });
            (one.await.unwrap(), two.await.unwrap())
        };
        assert!(
            owners().await >= 1,
            "round {round}: no owner left ({x:?}, {y:?})"
        );
        refused += usize::from(x.is_err()) + usize::from(y.is_err());
        if x.is_ok() && round % 2 == 1 {
            // A was removed: bring them back for the next round.
            membership::ActiveModel {
                workspace_id: Set(w.ws),
                user_id: Set(a),
                role: Set("admin".into()),
                created_at: Set(chrono::Utc::now()),
            }
            .insert(&w.t.db)
            .await
            .unwrap();
        }
    }
    assert_eq!(refused, 12, "exactly one change of each pair is refused");
}
both_backends!(
    concurrent_demotions_keep_an_owner,
    super::concurrent_demotions_keep_an_owner
);

/// Open sign-up with a relay that nobody listens on (these tests never look at the mail).
fn nowhere_mail() -> sign_up::SignUps {
    let settings = keyward_server::config::Settings {
        smtp_url: Some(keyward_server::config::SecretUrl::new("smtp://127.0.0.1:9")),
        mail_from: Some("keyward@example.com".into()),
        ..Default::default()
    };
    let mailer = keyward_server::mail::Mailer::from_settings(&settings).unwrap();
    sign_up::SignUps::new(mailer, Some("http://keyward.test"), Default::default())
}

/// An enum-like column holding a value the code does not know is corrupt data: reading it is an
/// error that names the column, never a silent default (a "platinum" plan was read as Free).
async fn unknown_column_values_fail_loudly(backend: Backend) {
    use keyward_server::entities::workspace;
    use keyward_server::services::keys::{self, Scope};
    use sea_orm::{ColumnTrait, QueryFilter};
    let (w, _, _, _) = world(backend).await;
    let db = &w.t.db;
    assert!(keys::page(db, Scope::Workspace(w.ws), true).await.is_ok());
    workspace::Entity::update_many()
        .col_expr(
            workspace::Column::Plan,
            sea_orm::sea_query::Expr::value("platinum"),
        )
        .filter(workspace::Column::Id.eq(w.ws))
        .exec(db)
        .await
        .unwrap();
    match keys::page(db, Scope::Workspace(w.ws), true).await {
        Err(ServiceError::Internal(m)) => {
            assert!(
                m.contains("workspaces.plan") && m.contains("platinum"),
                "{m}"
            )
        }
        other => panic!("{:?}", other.map(|_| "a page")),
    }
}
both_backends!(
    unknown_column_values_fail_loudly,
    super::unknown_column_values_fail_loudly
);
