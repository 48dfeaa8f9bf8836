//! The signed-in user's profile: password and sessions.

use super::auth_pages::ActionError;
use crate::api::{ChangePassword, CreateWorkspace, SignOutEverywhere, list_sessions};
use crate::auth::{RequireAuth, use_auth, use_me};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

#[component]
pub fn Profile() -> impl IntoView {
    view! {
        <Title text="Profile"/>
        <RequireAuth>
            <ProfileInner/>
        </RequireAuth>
    }
}

#[component]
fn ProfileInner() -> impl IntoView {
    let me = use_me();
    let change = ServerAction::<ChangePassword>::new();
    let everywhere = ServerAction::<SignOutEverywhere>::new();
    let sessions = Resource::new(move || change.version().get(), |_| list_sessions());
    let auth = use_auth();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = everywhere.value().get() {
            auth.refresh();
            navigate("/sign-in", Default::default());
        }
    });
    let changed = move || matches!(change.value().get(), Some(Ok(())));
    let create = ServerAction::<CreateWorkspace>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = create.value().get() {
            auth.refresh();
        }
    });
    view! {
        <h1>"Profile"</h1>
        <section class="card">
            <dl class="facts">
                <dt>"Name"</dt><dd>{me.display_name.clone()}</dd>
                <dt>"Email"</dt><dd>{me.email.clone()}</dd>
                <dt>"Platform admin"</dt><dd>{if me.platform_admin { "yes" } else { "no" }}</dd>
            </dl>
        </section>
        <section class="card narrow" aria-labelledby="pw-heading">
            <h2 id="pw-heading">"Change password"</h2>
            <ActionForm action=change attr:class="stack">
                <label>"Current password"
                    <input type="password" name="current" required autocomplete="current-password"/>
                </label>
                <label>"New password (at least 10 characters)"
                    <input type="password" name="new_password" required minlength="10" autocomplete="new-password"/>
                </label>
                <ActionError error=Signal::derive(move || change.value().get().and_then(Result::err))/>
                {move || changed().then(|| view! {
                    <p role="status" class="ok">"Password changed. Your other sessions were signed out."</p>
                })}
                <button class="button" type="submit">"Change password"</button>
            </ActionForm>
        </section>
        <section class="card narrow" aria-labelledby="new-ws-heading">
            <h2 id="new-ws-heading">"Create a workspace"</h2>
            <ActionForm action=create attr:class="stack">
                <label>"Workspace name" <input type="text" name="name" required/></label>
                <ActionError error=Signal::derive(move || create.value().get().and_then(Result::err))/>
                {move || matches!(create.value().get(), Some(Ok(()))).then(|| view! {
                    <p role="status" class="ok">"Workspace created; you are now in it."</p>
                })}
                <button class="button" type="submit">"Create workspace"</button>
            </ActionForm>
        </section>
        <section class="card" aria-labelledby="sessions-heading">
            <h2 id="sessions-heading">"Sessions"</h2>
            <Transition>
                {move || sessions.get().map(|r| match r {
                    Ok(list) => view! {
                        <ul class="plain">
                            {list.into_iter().map(|s| view! {
                                <li>
                                    {format!(
                                        "{}{} · signed in {} · last seen {}",
                                        if s.current { "This browser · " } else { "" },
                                        s.user_agent.as_deref().unwrap_or("unknown browser").chars().take(60).collect::<String>(),
                                        &s.created_at[..16],
                                        &s.last_seen_at[..16],
                                    )}
                                </li>
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Transition>
            <ActionForm action=everywhere>
                <button class="button danger" type="submit">"Sign out everywhere"</button>
            </ActionForm>
        </section>
    }
}
