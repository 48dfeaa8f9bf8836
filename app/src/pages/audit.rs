//! The audit log: who did what to keys, members, policies and the vault, and when. Filters by
//! actor, action, provider and date. Read-only: no one can edit or delete an entry.

use crate::api::get_audit_log;
use crate::auth::{RequireAuth, use_me_memo};
use keyward::dto::AuditPage;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn Audit() -> impl IntoView {
    view! {
        <Title text="Audit log"/>
        <RequireAuth>
            <WorkspaceAudit/>
        </RequireAuth>
    }
}

#[component]
fn WorkspaceAudit() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <AuditView workspace_id=ws title="Audit log"/> }.into_any(),
        None => view! { <h1>"Audit log"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
pub fn PlatformAudit() -> impl IntoView {
    view! {
        <Title text="Platform audit log"/>
        <RequireAuth>
            <super::keys::AdminOnly title="Platform audit log">
                <AuditView workspace_id=String::new() title="Platform audit log"/>
            </super::keys::AdminOnly>
        </RequireAuth>
    }
}

#[derive(Clone, Default, PartialEq)]
struct Filter {
    actor: String,
    action: String,
    provider: String,
    from: String,
    to: String,
}

#[component]
fn AuditView(workspace_id: String, title: &'static str) -> impl IntoView {
    let platform = workspace_id.is_empty();
    let draft = RwSignal::new(Filter::default());
    let applied = RwSignal::new(Filter::default());
    let page = Resource::new(
        move || applied.get(),
        move |f: Filter| {
            // No workspace: the instance-wide log.
            let workspace = (!workspace_id.is_empty()).then(|| workspace_id.parse());
            async move {
                let workspace = workspace.transpose()?;
                get_audit_log(workspace, f.actor, f.action, f.provider, f.from, f.to).await
            }
        },
    );
    let field = move |label: &'static str,
                      kind: &'static str,
                      get: fn(&Filter) -> String,
                      set: fn(&mut Filter, String)| {
        view! {
            <label>
                {label}
                <input type=kind prop:value=move || get(&draft.get())
                    on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| set(d, v)); }/>
            </label>
        }
    };
    view! {
        {platform.then(|| view! { <super::admin::AdminNav/> })}
        <h1>{title}</h1>
        <p class="muted">"Every key operation, BYOK switch, policy change, member change and vault rotation. Entries show providers and masked hints only, and cannot be edited or deleted."</p>
        <form class="filters" on:submit=move |ev| { ev.prevent_default(); applied.set(draft.get_untracked()); }>
            {field("Who (email)", "text", |f| f.actor.clone(), |f, v| f.actor = v)}
            {field("What (e.g. key.)", "text", |f| f.action.clone(), |f, v| f.action = v)}
            {field("Provider", "text", |f| f.provider.clone(), |f, v| f.provider = v)}
            {field("From", "date", |f| f.from.clone(), |f, v| f.from = v)}
            {field("To", "date", |f| f.to.clone(), |f, v| f.to = v)}
            <button class="button secondary" type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(AuditPage { entries, truncated }) if entries.is_empty() => {
                    let _ = truncated;
                    view! { <p class="muted">"No entries match."</p> }.into_any()
                }
                Ok(AuditPage { entries, truncated }) => view! {
                    <table class="table" aria-label="Audit entries">
                        <thead><tr>
                            <th scope="col">"When"</th>
                            <th scope="col">"Who"</th>
                            <th scope="col">"What"</th>
                            <th scope="col">"Provider"</th>
                            <th scope="col">"Key"</th>
                            <th scope="col">"Detail"</th>
                        </tr></thead>
                        <tbody>
                            {entries.into_iter().map(|e| view! {
                                <tr>
                                    <td>{e.at}</td>
                                    <td>{e.actor.unwrap_or_default()}</td>
                                    <td><code>{e.action}</code></td>
                                    <td>{e.provider.unwrap_or_default()}</td>
                                    <td><code>{e.hint.unwrap_or_default()}</code></td>
                                    <td>{e.detail.unwrap_or_default()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    {truncated.then(|| view! { <p class="muted">"Showing the newest 500 entries; narrow the filters to see older ones."</p> })}
                }.into_any(),
            })}
        </Transition>
    }
}
