//! Who is looking, for every page: one resource at the root, refreshed after sign-in, sign-out
//! and workspace changes, and a guard component for pages that need a signed-in user.

use crate::api::get_session_state;
use crate::error::AppError;
use keyward::dto::{Me, SessionState};
use leptos::prelude::*;
use leptos_router::components::Redirect;

#[derive(Clone, Copy)]
pub struct Auth {
    pub state: Resource<Result<SessionState, AppError>>,
    version: RwSignal<u32>,
}

impl Auth {
    /// Re-reads the session (after sign-in, sign-out, switching workspace…).
    pub fn refresh(&self) {
        self.version.update(|v| *v += 1);
    }
}

pub fn provide_auth() {
    let version = RwSignal::new(0u32);
    let state = Resource::new(move || version.get(), |_| get_session_state());
    provide_context(Auth { state, version });
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

/// What a guarded page can be showing. Children are rendered afresh only when this changes, so
/// refreshing the session (after creating a workspace, say) keeps the page and its local state.
#[derive(Clone, Debug, PartialEq)]
enum Gate {
    Setup,
    SignedOut,
    SignedIn { user_id: String },
    Failed(String),
}

/// Renders `children` for a signed-in user; sends everyone else to set-up or sign-in.
#[component]
pub fn RequireAuth(children: ChildrenFn) -> impl IntoView {
    let auth = use_auth();
    let children = StoredValue::new(children);
    let me = Memo::new(move |_| auth.state.get().and_then(Result::ok).and_then(|s| s.me));
    provide_context(me);
    let gate = Memo::new(move |_| {
        auth.state.get().map(|state| match state {
            Ok(SessionState {
                needs_setup: true, ..
            }) => Gate::Setup,
            Ok(SessionState { me: None, .. }) => Gate::SignedOut,
            Ok(SessionState { me: Some(me), .. }) => Gate::SignedIn {
                user_id: me.user_id,
            },
            Err(e) => Gate::Failed(e.to_string()),
        })
    });
    view! {
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || {
                gate.get()
                    .map(|g| match g {
                        Gate::Setup => view! { <Redirect path="/setup"/> }.into_any(),
                        Gate::SignedOut => view! { <Redirect path="/sign-in"/> }.into_any(),
                        Gate::SignedIn { .. } => children.read_value()().into_any(),
                        Gate::Failed(e) => view! { <p role="alert" class="error">{e}</p> }.into_any(),
                    })
            }}
        </Transition>
    }
}

/// The signed-in user as it is now (inside [`RequireAuth`]); not reactive.
pub fn use_me() -> Me {
    use_me_memo()
        .get_untracked()
        .expect("use_me is only called inside RequireAuth, after sign-in")
}

/// The signed-in user, reactively (follows workspace switches and renames).
pub fn use_me_memo() -> Memo<Option<Me>> {
    expect_context::<Memo<Option<Me>>>()
}
