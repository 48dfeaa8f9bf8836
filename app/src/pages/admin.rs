//! Platform admin: every workspace on the instance and its plan.

use super::auth_pages::{ActionError, error_of};
use crate::api::{SetWorkspacePlan, list_all_workspaces};
use crate::auth::{RequireAuth, use_me};
use keyward::policy::Plan;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AdminWorkspaces() -> impl IntoView {
    view! {
        <Title text="Workspaces"/>
        <RequireAuth>
            <Inner/>
        </RequireAuth>
    }
}

#[component]
fn Inner() -> impl IntoView {
    let me = use_me();
    if !me.platform_admin {
        return view! {
            <h1>"Workspaces"</h1>
            <p role="alert" class="error">"Only platform admins can see this page."</p>
        }
        .into_any();
    }
    let set_plan = ServerAction::<SetWorkspacePlan>::new();
    let rows = Resource::new(move || set_plan.version().get(), |_| list_all_workspaces());
    view! {
        <AdminNav/>
        <h1>"Workspaces"</h1>
        <p class="muted">"Every workspace on this instance. Plans decide whether a workspace may bring its own keys."</p>
        <ActionError error=error_of(set_plan)/>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || rows.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(rows) => view! {
                    <table class="table">
                        <thead><tr>
                            <th scope="col">"Workspace"</th>
                            <th scope="col">"Members"</th>
                            <th scope="col">"Plan"</th>
                        </tr></thead>
                        <tbody>
                            {rows.into_iter().map(|w| {
                                let select_id = format!("plan-{}", w.id);
                                let label = format!("Plan for {}", w.name);
                                let save = format!("Save plan for {}", w.name);
                                view! {
                                    <tr>
                                        <td>{w.name.clone()} <span class="muted">{format!(" /{}", w.slug)}</span></td>
                                        <td>{w.members}</td>
                                        <td>
                                            <ActionForm action=set_plan attr:class="inline">
                                                <input type="hidden" name="workspace_id" value=w.id.clone()/>
                                                <label class="visually-hidden" for=select_id.clone()>{label}</label>
                                                <select name="plan" id=select_id>
                                                    {Plan::ALL.into_iter().map(|p| view! {
                                                        <option value=p.as_str() selected=p == w.plan>{p.as_str()}</option>
                                                    }).collect_view()}
                                                </select>
                                                <button class="button secondary" type="submit">{save}</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
    .into_any()
}

/// The platform admin's sub-navigation, shown at the top of every admin page.
#[component]
pub fn AdminNav() -> impl IntoView {
    use leptos_router::components::A;
    view! {
        <nav class="subnav" aria-label="Platform admin">
            <A href="/admin/workspaces" exact=true>"Workspaces"</A>
            <A href="/admin/providers" exact=true>"Providers"</A>
            <A href="/admin/keys" exact=true>"Platform keys"</A>
            <A href="/admin/usage" exact=true>"Usage"</A>
            <A href="/admin/credits" exact=true>"Credits and prices"</A>
            <A href="/admin/limits" exact=true>"Limits"</A>
            <A href="/admin/audit" exact=true>"Platform audit log"</A>
        </nav>
    }
}
