//! The page frame: skip link, header with the brand and the navigation, main content.
//! On narrow screens the navigation collapses behind a menu button.

use crate::api::{SignOut, SwitchWorkspace};
use crate::auth::use_auth;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

/// Navigation entries: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Dashboard"),
    ("/keys", "Keys"),
    ("/chatbots", "Chatbots"),
    ("/usage", "Usage"),
    ("/limits", "Limits"),
    ("/tokens", "API tokens"),
    ("/audit", "Audit"),
    ("/playground", "Playground"),
    ("/members", "Members"),
];

#[component]
pub fn Shell(children: Children) -> impl IntoView {
    let menu_open = RwSignal::new(false);

    // Effects run only in the browser, after hydration: the marker tells end-to-end tests (and
    // curious users' devtools) that the page is live.
    Effect::new(move |_| {
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });

    // The public chat pages are for visitors: no dashboard navigation around them.
    let location = use_location();
    if location.pathname.get_untracked().starts_with("/chat/") {
        return view! {
            <main id="main" class="bare" tabindex="-1">{children()}</main>
            <footer class="footer">
                <small>"Powered by Keyward"</small>
            </footer>
        }
        .into_any();
    }

    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <header class="topbar">
            <a class="brand" href="/">
                <svg class="brand-mark" viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
                    <rect width="32" height="32" rx="7" fill="currentColor"></rect>
                    <circle cx="12" cy="16" r="6" fill="none" stroke="white" stroke-width="3"></circle>
                    <path
                        d="M18 16h10M24 16v5M28 16v4"
                        stroke="white"
                        stroke-width="3"
                        stroke-linecap="round"
                    ></path>
                </svg>
                "Keyward"
            </a>
            <button
                class="menu-toggle"
                type="button"
                aria-controls="primary-nav"
                aria-expanded=move || menu_open.get().to_string()
                on:click=move |_| menu_open.update(|open| *open = !*open)
            >
                {move || if menu_open.get() { "Close menu" } else { "Menu" }}
            </button>
            <nav
                id="primary-nav"
                aria-label="Primary"
                class="primary-nav"
                class:open=move || menu_open.get()
            >
                // Following a link (the click bubbles up here) closes the menu on phones.
                <ul on:click=move |_| menu_open.set(false)>
                    {NAV
                        .iter()
                        .map(|(href, label)| {
                            view! {
                                <li>
                                    <A href=*href exact=true>{*label}</A>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </nav>
            <UserBar/>
        </header>
        <main id="main" tabindex="-1">{children()}</main>
        <footer class="footer">
            <small>"Keyward " {env!("CARGO_PKG_VERSION")} " · bring your own key"</small>
        </footer>
    }
    .into_any()
}

/// Workspace switcher, profile link and sign-out, for signed-in users.
#[component]
fn UserBar() -> impl IntoView {
    let auth = use_auth();
    let switch = ServerAction::<SwitchWorkspace>::new();
    let sign_out = ServerAction::<SignOut>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = switch.value().get() {
            auth.refresh();
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = sign_out.value().get() {
            auth.refresh();
            navigate("/sign-in", Default::default());
        }
    });
    view! {
            {move || {
                auth.state
                    .get()
                    .and_then(Result::ok)
                    .and_then(|s| s.me)
                    .map(|me| {
                        let current = me.current.as_ref().map(|w| w.id.clone()).unwrap_or_default();
                        view! {
                            <div class="userbar">
                                <label class="visually-hidden" for="workspace-switcher">"Workspace"</label>
                                <select
                                    id="workspace-switcher"
                                    on:change=move |ev| {
                                        switch.dispatch(SwitchWorkspace {
                                            workspace_id: event_target_value(&ev),
                                        });
                                    }
                                >
                                    {me.workspaces
                                        .iter()
                                        .map(|w| {
                                            view! {
                                                <option value=w.id.clone() selected=w.id == current>
                                                    {w.name.clone()}
                                                </option>
                                            }
                                        })
                                        .collect_view()}
                                </select>
                                {me.platform_admin.then(|| view! { <A href="/admin/workspaces">"Admin"</A> })}
                                <A href="/profile">{me.display_name.clone()}</A>
                                <ActionForm action=sign_out attr:class="inline">
                                    <button class="button secondary" type="submit">"Sign out"</button>
                                </ActionForm>
                            </div>
                        }
                    })
            }}
    }
}
