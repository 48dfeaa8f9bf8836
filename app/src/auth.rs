//! Who is looking, for every page: one session signal at the root, and a guard component for
//! pages that need a signed-in user.
//!
//! The session is known before a page renders, not loaded by it: the server works it out from
//! the request (`routes::pages::session` in the server) and renders the page with it, and the
//! same value travels in the page's `<head>` as JSON (`<SessionData/>`) for hydration to start
//! from. The guard and the user bar therefore need no `<Transition>` of their own: every page
//! has exactly one suspense boundary per data resource, never one shared resource read by
//! nested boundaries (a shape that made Leptos' streaming renderer occasionally never finish a
//! page). After sign-in, sign-out and workspace changes the browser re-reads the session.

use crate::api::get_session_state;
use crate::error::AppError;
use keyward::dto::{Me, SessionState};
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// The session as the server saw it for this request, or the error it met reading it.
pub type Session = Result<SessionState, AppError>;

/// What the server read from the request before rendering; put into the request's extensions
/// by the server and read by [`provide_auth`] and [`SessionData`].
#[derive(Clone, Debug)]
pub struct ServerSession(pub Session);

/// The `id` of the `<script type="application/json">` holding the session for hydration.
const SESSION_SCRIPT_ID: &str = "kw-session";

#[derive(Clone, Copy)]
pub struct Auth {
    /// `None` only until the session is known (a page the server rendered without it).
    pub state: RwSignal<Option<Session>>,
    version: RwSignal<u32>,
}

impl Auth {
    /// Re-reads the session (after sign-in, sign-out, switching workspace…). Only the newest
    /// read is kept, so answers arriving out of order cannot bring back an older session.
    pub fn refresh(&self) {
        let (state, version) = (self.state, self.version);
        version.update(|v| *v += 1);
        let mine = version.get_untracked();
        leptos::task::spawn_local(async move {
            let fresh = get_session_state().await;
            if version.get_untracked() == mine {
                state.set(Some(fresh));
            }
        });
    }
}

/// The session the server read for this request (see [`ServerSession`]).
#[cfg(feature = "ssr")]
fn server_session() -> Option<Session> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ServerSession>().cloned())
        .map(|s| s.0)
}

/// The session this page was rendered with: from the request on the server, from the page's
/// `<head>` in the browser.
fn initial_session() -> Option<Session> {
    #[cfg(feature = "ssr")]
    {
        server_session()
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        document()
            .get_element_by_id(SESSION_SCRIPT_ID)
            .and_then(|el| el.text_content())
            .and_then(|json| serde_json::from_str::<Option<Session>>(&json).ok())
            .flatten()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        None
    }
}

pub fn provide_auth() {
    let initial = initial_session();
    let unknown = initial.is_none();
    let auth = Auth {
        state: RwSignal::new(initial),
        version: RwSignal::new(0),
    };
    provide_context(auth);
    // A page rendered without the session (the not-found page) learns it once it is live.
    if unknown {
        Effect::new(move |_| auth.refresh());
    }
}

/// The session, as JSON in the document's `<head>`, for [`provide_auth`] in the browser.
/// `<` is escaped so that no value can close the script element.
#[component]
pub fn SessionData() -> impl IntoView {
    #[cfg(feature = "ssr")]
    let json = serde_json::to_string(&server_session())
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    #[cfg(not(feature = "ssr"))]
    let json = String::from("null");
    view! { <script id=SESSION_SCRIPT_ID type="application/json" inner_html=json></script> }
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
    move || match gate.get() {
        None => view! { <p aria-busy="true">"Loading…"</p> }.into_any(),
        Some(Gate::Setup) => view! { <Redirect path="/setup"/> }.into_any(),
        Some(Gate::SignedOut) => view! { <Redirect path="/sign-in"/> }.into_any(),
        Some(Gate::SignedIn { .. }) => children.read_value()().into_any(),
        Some(Gate::Failed(e)) => view! { <p role="alert" class="error">{e}</p> }.into_any(),
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
