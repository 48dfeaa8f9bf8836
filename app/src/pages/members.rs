//! Members and invitations of the current workspace. Owners manage; everyone else reads.

use super::auth_pages::ActionError;
use crate::api::{
    ChangeMemberRole, InviteMember, RemoveMember, RenameWorkspace, RevokeInvitation,
    TransferOwnership, get_members,
};
use crate::auth::{RequireAuth, use_auth, use_me_memo};
use crate::error::AppError;
use keyward::dto::WorkspaceSummary;
use keyward::dto::{MemberView, MembersPage};
use keyward::policy::Role;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn Members() -> impl IntoView {
    view! {
        <Title text="Members"/>
        <RequireAuth>
            <CurrentWorkspace/>
        </RequireAuth>
    }
}

/// Re-renders the page when the current workspace changes (switcher, rename).
#[component]
fn CurrentWorkspace() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current));
    move || match current.get() {
        Some(current) => view! { <MembersInner current/> }.into_any(),
        None => view! { <h1>"Members"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
fn MembersInner(current: WorkspaceSummary) -> impl IntoView {
    let ws = current.id.clone();
    let invite = ServerAction::<InviteMember>::new();
    let change = ServerAction::<ChangeMemberRole>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let revoke = ServerAction::<RevokeInvitation>::new();
    let transfer = ServerAction::<TransferOwnership>::new();
    let page = Resource::new(
        move || {
            (
                invite.version().get(),
                change.version().get(),
                remove.version().get(),
                revoke.version().get(),
                transfer.version().get(),
            )
        },
        {
            let ws = ws.clone();
            move |_| get_members(ws.clone())
        },
    );
    let errors = Signal::derive(move || {
        [
            change.value().get().and_then(Result::err),
            remove.value().get().and_then(Result::err),
            revoke.value().get().and_then(Result::err),
            transfer.value().get().and_then(Result::err),
        ]
        .into_iter()
        .flatten()
        .next()
    });
    let ws_name = current.name.clone();
    view! {
        <h1>"Members"</h1>
        <p class="muted">{format!("Workspace: {ws_name}")}</p>
        <ActionError error=errors/>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || {
                page.get()
                    .map(|p: Result<MembersPage, AppError>| match p {
                        Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                        Ok(p) => {
                            let manage = p.can_manage;
                            let ws = p.workspace.id.clone();
                            view! {
                                <section class="card" aria-labelledby="members-heading">
                                    <h2 id="members-heading">"People"</h2>
                                    {(!manage).then(|| view! {
                                        <p class="muted">"Only owners can change members. You can see who is here."</p>
                                    })}
                                    <table class="table">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Name"</th>
                                                <th scope="col">"Email"</th>
                                                <th scope="col">"Role"</th>
                                                {manage.then(|| view! { <th scope="col">"Actions"</th> })}
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {p.members
                                                .into_iter()
                                                .map(|m| member_row(m, manage, ws.clone(), change, remove, transfer))
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                </section>
                                <section class="card" aria-labelledby="invites-heading">
                                    <h2 id="invites-heading">"Pending invitations"</h2>
                                    {if p.invitations.is_empty() {
                                        view! { <p class="muted">"None."</p> }.into_any()
                                    } else {
                                        view! {
                                            <ul class="plain">
                                                {p.invitations
                                                    .into_iter()
                                                    .map(|i| {
                                                        let ws = ws.clone();
                                                        view! {
                                                            <li>
                                                                {format!("{} · {} · expires {}", i.email, i.role.label(), &i.expires_at[..10])}
                                                                {manage.then(|| view! {
                                                                    <ActionForm action=revoke attr:class="inline">
                                                                        <input type="hidden" name="workspace_id" value=ws.clone()/>
                                                                        <input type="hidden" name="invitation_id" value=i.id.clone()/>
                                                                        <button class="button secondary" type="submit">
                                                                            {format!("Revoke invitation for {}", i.email)}
                                                                        </button>
                                                                    </ActionForm>
                                                                })}
                                                            </li>
                                                        }
                                                    })
                                                    .collect_view()}
                                            </ul>
                                        }.into_any()
                                    }}
                                </section>
                                {manage.then(|| view! { <InviteForm ws=ws.clone() invite=invite/> })}
                                {manage.then(|| view! { <RenameForm ws=ws.clone() name=p.workspace.name.clone()/> })}
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
    .into_any()
}

fn member_row(
    m: MemberView,
    manage: bool,
    ws: String,
    change: ServerAction<ChangeMemberRole>,
    remove: ServerAction<RemoveMember>,
    transfer: ServerAction<TransferOwnership>,
) -> impl IntoView {
    let name = if m.is_you {
        format!("{} (you)", m.display_name)
    } else {
        m.display_name.clone()
    };
    let controls = (manage && !m.is_you).then(|| {
        let label = m.email.clone();
        let uid = m.user_id.clone();
        let transfer_form = (m.role != Role::Owner).then({
            let (ws, uid, label) = (ws.clone(), uid.clone(), label.clone());
            move || {
                view! {
                    <ActionForm action=transfer attr:class="inline">
                        <input type="hidden" name="workspace_id" value=ws/>
                        <input type="hidden" name="user_id" value=uid/>
                        <button class="button secondary" type="submit">{format!("Make {label} owner")}</button>
                    </ActionForm>
                }
            }
        });
        let select_id = format!("role-{uid}");
        let (ws2, uid2) = (ws.clone(), uid.clone());
        let role_label = format!("Role for {label}");
        let change_label = format!("Change role of {label}");
        let remove_label = format!("Remove {label}");
        let role = m.role;
        view! {
            <td class="actions">
                <ActionForm action=change attr:class="inline">
                    <input type="hidden" name="workspace_id" value=ws/>
                    <input type="hidden" name="user_id" value=uid/>
                    <label class="visually-hidden" for=select_id.clone()>
                        {role_label}
                    </label>
                    <select name="role" id=select_id>
                        {Role::ALL
                            .into_iter()
                            .map(|r| view! { <option value=r.as_str() selected=r == role>{r.label()}</option> })
                            .collect_view()}
                    </select>
                    <button class="button secondary" type="submit">{change_label}</button>
                </ActionForm>
                {transfer_form}
                <ActionForm action=remove attr:class="inline">
                    <input type="hidden" name="workspace_id" value=ws2/>
                    <input type="hidden" name="user_id" value=uid2/>
                    <button class="button danger" type="submit">{remove_label}</button>
                </ActionForm>
            </td>
        }
    });
    let own_cell = (manage && m.is_you).then(|| view! { <td></td> });
    view! {
        <tr>
            <td>{name}</td>
            <td>{m.email.clone()}</td>
            <td>{m.role.label()}</td>
            {controls}
            {own_cell}
        </tr>
    }
}

#[component]
fn InviteForm(ws: String, invite: ServerAction<InviteMember>) -> impl IntoView {
    let link = move || invite.value().get().and_then(Result::ok);
    let error = Signal::derive(move || invite.value().get().and_then(Result::err));
    view! {
        <section class="card" aria-labelledby="invite-heading">
            <h2 id="invite-heading">"Invite someone"</h2>
            <ActionForm action=invite attr:class="stack">
                <input type="hidden" name="workspace_id" value=ws/>
                <label>"Email" <input type="email" name="email" required/></label>
                <label for="invite-role">"Role"</label>
                <select id="invite-role" name="role">
                        {Role::ALL
                            .into_iter()
                            .map(|r| view! { <option value=r.as_str() selected=r == Role::Member>{r.label()}</option> })
                            .collect_view()}
                </select>
                <ActionError error=error/>
                <button class="button" type="submit" disabled=move || invite.pending().get()>
                    "Create invitation"
                </button>
            </ActionForm>
            {move || link().map(|path| {
                let full = format!("{}{}", origin(), path);
                view! {
                    <div class="notice" role="status">
                        <p>"Send this single-use link to the person you invited (valid for 7 days). It is shown only once:"</p>
                        <code data-testid="invite-link">{full}</code>
                    </div>
                }
            })}
        </section>
    }
}

/// The page's origin in the browser (empty during server rendering, where no link exists yet).
fn origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        window().location().origin().unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

#[component]
fn RenameForm(ws: String, name: String) -> impl IntoView {
    let rename = ServerAction::<RenameWorkspace>::new();
    let auth = use_auth();
    Effect::new(move |_| {
        if let Some(Ok(())) = rename.value().get() {
            auth.refresh();
        }
    });
    view! {
        <section class="card narrow" aria-labelledby="rename-heading">
            <h2 id="rename-heading">"Workspace name"</h2>
            <ActionForm action=rename attr:class="stack">
                <input type="hidden" name="workspace_id" value=ws/>
                <label>"Name" <input type="text" name="name" required value=name/></label>
                <ActionError error=Signal::derive(move || rename.value().get().and_then(Result::err))/>
                <button class="button" type="submit">"Rename workspace"</button>
            </ActionForm>
        </section>
    }
}
