//! First-run set-up, sign-in, and accepting an invitation.

use crate::api::{
    AcceptInvitation, ConfirmSignUp, SetupInstance, SignIn, SignUp, SignUpWithInvitation,
    get_invitation, get_sign_up,
};
use crate::auth::use_auth;
use crate::error::AppError;
use keyward::dto::SessionState;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

/// Shows an action's error inline, announced to screen readers.
#[component]
pub fn ActionError(error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error
            .get()
            .map(|e| view! { <p role="alert" class="error">{e.to_string()}</p> })
    }
}

pub fn error_of<T>(action: ServerAction<T>) -> Signal<Option<AppError>>
where
    T: leptos::server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    T::Output: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(Result::err))
}

/// After a successful action: re-read the session, and go to `to` once the fresh session shows
/// a signed-in user (navigating earlier would let the page see the stale, signed-out state).
fn on_success<T>(action: ServerAction<T>, to: &'static str)
where
    T: leptos::server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    T::Output: Clone + Send + Sync + 'static,
{
    let auth = use_auth();
    let navigate = use_navigate();
    let waiting = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            waiting.set(true);
            auth.refresh();
        }
    });
    Effect::new(move |_| {
        if !waiting.get() {
            return;
        }
        let signed_in = matches!(
            auth.state.get(),
            Some(Ok(SessionState {
                me: Some(_),
                needs_setup: false,
                ..
            }))
        );
        if signed_in {
            waiting.set(false);
            navigate(to, Default::default());
        }
    });
}

#[component]
pub fn Setup() -> impl IntoView {
    let action = ServerAction::<SetupInstance>::new();
    on_success(action, "/");
    // The one-time token from the link the server printed when it started.
    let query = leptos_router::hooks::use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    view! {
        <Title text="Set up Keyward"/>
        <h1>"Set up Keyward"</h1>
        <section class="card narrow">
            <p>"Create the first account. It becomes the platform admin and owner of your first workspace."</p>
            <ActionForm action=action attr:class="stack">
                <label>
                    "Set-up token (in the link the server printed when it started)"
                    <input type="text" name="token" required autocomplete="off" value=token/>
                </label>
                <NewAccountFields/>
                <ActionError error=error_of(action)/>
                <button class="button" type="submit" disabled=move || action.pending().get()>
                    "Create account"
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    on_success(action, "/");
    let auth = use_auth();
    view! {
        <Title text="Sign in"/>
        <h1>"Sign in"</h1>
            {move || {
                auth.state
                    .get()
                    .map(|s| match s {
                        Ok(SessionState { needs_setup: true, .. }) => Some(
                            view! {
                                <p>"This instance has no accounts yet. " <a href="/setup">"Set it up"</a></p>
                            }
                                .into_any(),
                        ),
                        Ok(SessionState { open_sign_up: true, .. }) => Some(
                            view! { <p>"New here? " <a href="/sign-up">"Create an account"</a></p> }
                                .into_any(),
                        ),
                        _ => None,
                    })
            }}
        <section class="card narrow">
            <ActionForm action=action attr:class="stack">
                <label>"Email" <input type="email" name="email" required autocomplete="username"/></label>
                <label>
                    "Password"
                    <input type="password" name="password" required autocomplete="current-password"/>
                </label>
                <ActionError error=error_of(action)/>
                <button class="button" type="submit" disabled=move || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn InvitePage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let preview = Resource::new(token, get_invitation);
    let auth = use_auth();
    let accept = ServerAction::<AcceptInvitation>::new();
    let sign_up = ServerAction::<SignUpWithInvitation>::new();
    on_success(accept, "/members");
    on_success(sign_up, "/members");
    view! {
        <Title text="Invitation"/>
        <h1>"Invitation"</h1>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || {
                let signed_in = auth
                    .state
                    .get()
                    .and_then(Result::ok)
                    .and_then(|s| s.me)
                    .map(|me| me.email);
                preview
                    .get()
                    .map(|p| match p {
                        Err(_) => {
                            view! {
                                <p role="alert" class="error">
                                    "This invitation is not valid: it may have been used, revoked or have expired."
                                </p>
                            }
                                .into_any()
                        }
                        Ok(p) => {
                            let intro = format!(
                                "You are invited to join {} as {}.",
                                p.workspace_name,
                                p.role.label().to_lowercase(),
                            );
                            let form = match signed_in {
                                Some(email) if email == p.email => {
                                    view! {
                                        <ActionForm action=accept attr:class="stack">
                                            <input type="hidden" name="token" value=token()/>
                                            <ActionError error=error_of(accept)/>
                                            <button class="button" type="submit">"Accept invitation"</button>
                                        </ActionForm>
                                    }
                                        .into_any()
                                }
                                Some(email) => {
                                    view! {
                                        <p class="error" role="alert">
                                            {format!(
                                                "You are signed in as {email}, but this invitation is for {}.",
                                                p.email,
                                            )}
                                        </p>
                                    }
                                        .into_any()
                                }
                                None => {
                                    view! {
                                        <p>
                                            {format!("Create your account for {}, or ", p.email)}
                                            <a href="/sign-in">"sign in"</a>
                                            " first if you already have one."
                                        </p>
                                        <ActionForm action=sign_up attr:class="stack">
                                            <input type="hidden" name="token" value=token()/>
                                            <label>
                                                "Your name"
                                                <input type="text" name="display_name" required autocomplete="name"/>
                                            </label>
                                            <label>
                                                "Password (at least 10 characters)"
                                                <input
                                                    type="password"
                                                    name="password"
                                                    required
                                                    minlength="10"
                                                    autocomplete="new-password"
                                                />
                                            </label>
                                            <ActionError error=error_of(sign_up)/>
                                            <button class="button" type="submit">"Create account and join"</button>
                                        </ActionForm>
                                    }
                                        .into_any()
                                }
                            };
                            view! {
                                <section class="card narrow">
                                    <p>{intro}</p>
                                    {form}
                                </section>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

/// Open sign-up (only offered when the operator enabled it). The answer is "check your inbox"
/// whatever the address: the mailed link creates the account.
#[component]
pub fn SignUpPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    let sent = move || matches!(action.value().get(), Some(Ok(())));
    view! {
        <Title text="Create an account"/>
        <h1>"Create an account"</h1>
        <section class="card narrow">
            <Show
                when=sent
                fallback=move || {
                    view! {
                        <ActionForm action=action attr:class="stack">
                            <NewAccountFields/>
                            <ActionError error=error_of(action)/>
                            <button class="button" type="submit" disabled=move || action.pending().get()>
                                "Create account"
                            </button>
                        </ActionForm>
                    }
                }
            >
                <p role="status" data-testid="sign-up-sent">
                    "Check your inbox: we sent a link to the address you gave. Open it within 24 hours to finish creating your account."
                </p>
            </Show>
        </section>
    }
}

/// Where a sign-up link leads: what it would create, and one button to create it.
#[component]
pub fn ConfirmSignUpPage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let preview = Resource::new(token, get_sign_up);
    let confirm = ServerAction::<ConfirmSignUp>::new();
    on_success(confirm, "/");
    view! {
        <Title text="Finish creating your account"/>
        <h1>"Finish creating your account"</h1>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || {
                preview
                    .get()
                    .map(|p| match p {
                        Err(_) => {
                            view! {
                                <p role="alert" class="error">
                                    "This link is not valid: it may have been used already or have expired. "
                                    <a href="/sign-up">"Start again"</a>
                                </p>
                            }
                                .into_any()
                        }
                        Ok(p) => {
                            view! {
                                <section class="card narrow">
                                    <p>
                                        {format!(
                                            "Create the account {} with the workspace {}.",
                                            p.email,
                                            p.workspace_name,
                                        )}
                                    </p>
                                    <ActionForm action=confirm attr:class="stack">
                                        <input type="hidden" name="token" value=token()/>
                                        <ActionError error=error_of(confirm)/>
                                        <button class="button" type="submit" disabled=move || confirm.pending().get()>
                                            "Create my account"
                                        </button>
                                    </ActionForm>
                                </section>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

/// The fields of a new account with its first workspace (set-up and open sign-up).
#[component]
fn NewAccountFields() -> impl IntoView {
    view! {
        <label>"Email" <input type="email" name="email" required autocomplete="email"/></label>
        <label>"Your name" <input type="text" name="display_name" required autocomplete="name"/></label>
        <label>
            "Password (at least 10 characters)"
            <input type="password" name="password" required minlength="10" autocomplete="new-password"/>
        </label>
        <label>"Workspace name" <input type="text" name="workspace_name" required/></label>
    }
}
