//! The keys page: every provider of the catalogue with this scope's key — a workspace's (`/keys`)
//! or the platform's fallback keys (`/admin/keys`). Owners (platform admins for platform keys)
//! add, test, replace, disable, enable and delete; everyone else sees the same page read-only.
//!
//! Forms post to their server function's URL (so without JavaScript a key never lands in a URL;
//! the CSRF check refuses such a post). Hydrated, each form is handled in place: the list
//! refreshes, and each row shows its own pending state, result and errors.

use crate::api::{
    AddKey, ReplaceKey, SetFailurePolicy, TestNewKey, add_key, delete_key, get_keys, replace_key,
    set_failure_policy, set_key_enabled, test_new_key, test_saved_key,
};
use crate::auth::{RequireAuth, use_me_memo};
use crate::error::AppError;
use keyward::dto::{KeyRow, KeyTestResult, KeysPage};
use keyward::ids::{KeyId, KeyScope, NoSuch};
use keyward::keys::{FailurePolicy, KeyState};
use leptos::form::FromFormData;
use leptos::html;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos::web_sys;
use leptos_meta::Title;
use std::collections::HashMap;

#[component]
pub fn Keys() -> impl IntoView {
    view! {
        <Title text="Keys"/>
        <RequireAuth>
            <WorkspaceKeys/>
        </RequireAuth>
    }
}

/// Inside [`RequireAuth`]: follows the current workspace (switcher).
#[component]
fn WorkspaceKeys() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <KeysView workspace_id=ws title="Keys"/> }.into_any(),
        None => view! { <h1>"Keys"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
pub fn PlatformKeys() -> impl IntoView {
    view! {
        <Title text="Platform keys"/>
        <RequireAuth>
            <AdminOnly title="Platform keys">
                <KeysView workspace_id=String::new() title="Platform keys"/>
            </AdminOnly>
        </RequireAuth>
    }
}

/// Inside [`RequireAuth`]: renders its children for platform admins only.
#[component]
pub fn AdminOnly(title: &'static str, children: ChildrenFn) -> impl IntoView {
    let me = use_me_memo();
    let admin = Memo::new(move |_| me.get().is_some_and(|m| m.platform_admin));
    move || {
        if admin.get() {
            children().into_any()
        } else {
            view! {
                <h1>{title}</h1>
                <p role="alert" class="error">"Only platform admins can see this page."</p>
            }
            .into_any()
        }
    }
}

/// What one row is doing or last did, kept outside the rows so a refresh does not lose it.
#[derive(Clone, Debug, Default, PartialEq)]
struct RowState {
    busy: Option<&'static str>,
    /// `Ok(message)` or `Err(message)` of the last operation.
    result: Option<Result<String, String>>,
    /// Which form of the row is open: `"replace"`.
    open: Option<&'static str>,
}

type States = RwSignal<HashMap<String, RowState>>;

fn test_message(t: &KeyTestResult) -> Result<String, String> {
    if t.ok {
        Ok(format!("Test passed: {} ({} ms)", t.message, t.latency_ms))
    } else {
        let class = t.class.map(|c| c.label()).unwrap_or("Failed");
        Err(format!(
            "Test failed — {class}: {} ({} ms)",
            t.message, t.latency_ms
        ))
    }
}

fn set_state(states: States, provider: &str, f: impl FnOnce(&mut RowState)) {
    states.update(|m| f(m.entry(provider.to_string()).or_default()));
}

/// Reads a form's fields into a server function's arguments.
fn form_input<T: FromFormData>(form: NodeRef<html::Form>) -> Option<T> {
    let form: web_sys::HtmlFormElement = form.get_untracked()?;
    let data = web_sys::FormData::new_with_form(&form).ok()?;
    T::from_form_data(&data).ok()
}

#[component]
pub fn KeysView(
    workspace_id: String,
    title: &'static str,
    /// Set: this chatbot's own keys (they override the workspace's for it).
    #[prop(optional)]
    chatbot_id: String,
) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let states: States = RwSignal::new(HashMap::new());
    // The route's ids: no workspace is the platform's keys; a chatbot narrows to its own.
    let scope: Result<KeyScope, NoSuch> = match (workspace_id.as_str(), chatbot_id.as_str()) {
        ("", "") => Ok(KeyScope::Platform),
        (ws, "") => ws.parse().map(KeyScope::Workspace),
        (ws, bot) => ws
            .parse()
            .and_then(|w| Ok(KeyScope::of(w, Some(bot.parse()?)))),
    };
    let page = Resource::new(
        move || reload.get(),
        move |_| async move { get_keys(scope?).await },
    );
    let platform = workspace_id.is_empty();
    view! {
        {platform.then(|| view! { <super::admin::AdminNav/> })}
        <h1>{title}</h1>
        {if platform {
            view! { <p class="muted">"Fallback keys every workspace can use when it has no key of its own (or BYOK is off). Requests on them use credits."</p> }.into_any()
        } else if !chatbot_id.is_empty() {
            view! { <p class="muted">"This chatbot's own keys. For this chatbot they take precedence over the workspace's keys; they are encrypted in the vault and shown only as a masked hint."</p> }.into_any()
        } else {
            view! { <p class="muted">"Your workspace's provider keys. They are encrypted in the vault and never shown again: only a masked hint."</p> }.into_any()
        }}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|p: Result<KeysPage, AppError>| match p {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => match scope {
                    Ok(scope) => view! { <KeysBody page=p scope reload states/> }.into_any(),
                    Err(_) => ().into_any(),
                },
            })}
        </Transition>
    }
}

#[component]
fn KeysBody(
    page: KeysPage,
    scope: KeyScope,
    reload: RwSignal<u32>,
    states: States,
) -> impl IntoView {
    let manage = page.can_manage;
    let platform = page.workspace.is_none();
    let banner = (!platform && !page.plan_allows_byok).then(|| view! {
        <p class="notice" role="note">
            "Your plan does not include bring-your-own-key: requests use the platform's keys. Keys you store here are kept but inactive."
        </p>
    });
    let read_only = (!manage).then(|| view! {
        <p class="muted">"Only owners can change keys. You can see which keys exist, masked."</p>
    });
    let policy = match scope {
        KeyScope::Workspace(ws) => Some(
            view! { <PolicyForm ws=ws.to_string() current=page.failure_policy manage reload/> },
        ),
        _ => None,
    };
    view! {
        {banner}
        {read_only}
        {policy}
        <ul class="key-list" aria-label="Providers">
            {page.rows.into_iter().map(|row| view! {
                <ProviderRow row scope manage platform reload states/>
            }).collect_view()}
        </ul>
    }
}

#[component]
fn PolicyForm(
    ws: String,
    current: FailurePolicy,
    manage: bool,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let form = NodeRef::<html::Form>::new();
    let on_submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(input) = form_input::<SetFailurePolicy>(form) else {
            return;
        };
        spawn_local(async move {
            match set_failure_policy(input.workspace_id, input.policy).await {
                Ok(()) => {
                    error.set(None);
                    reload.update(|n| *n += 1);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <section class="card" aria-labelledby="policy-heading">
            <h2 id="policy-heading">"When one of your keys fails"</h2>
            {if manage {
                view! {
                    <form node_ref=form method="post" action=SetFailurePolicy::url() class="inline" on:submit=on_submit>
                        <input type="hidden" name="workspace_id" value=ws/>
                        <label for="failure-policy" class="visually-hidden">"Failure policy"</label>
                        <select id="failure-policy" name="policy">
                            {FailurePolicy::ALL.into_iter().map(|p| view! {
                                <option value=p.as_str() selected=p == current>{p.label()}</option>
                            }).collect_view()}
                        </select>
                        <button class="button secondary" type="submit">"Save policy"</button>
                    </form>
                }.into_any()
            } else {
                view! { <p>{current.label()}</p> }.into_any()
            }}
            {move || error.get().map(|e| view! { <p role="alert" class="error">{e}</p> })}
        </section>
    }
}

fn state_badge(state: KeyState) -> impl IntoView {
    let class = match state {
        KeyState::Active => "badge ok",
        KeyState::Disabled => "badge muted",
        KeyState::InactiveByok => "badge warn",
    };
    view! { <span class=class>{state.label()}</span> }
}

#[component]
fn ProviderRow(
    row: KeyRow,
    scope: KeyScope,
    manage: bool,
    platform: bool,
    reload: RwSignal<u32>,
    states: States,
) -> impl IntoView {
    let p = row.provider.clone();
    let pid = p.id.clone();
    let heading_id = format!("provider-{pid}");
    let labelled_by = heading_id.clone();
    let state = Memo::new({
        let pid = pid.clone();
        move |_| states.get().get(&pid).cloned().unwrap_or_default()
    });
    let get_key = p.key_url.clone().map(|url| view! {
        <a href=url target="_blank" rel="noopener noreferrer">{format!("Get a key from {}", p.name)}</a>
    });
    let shape = p
        .key_shape
        .clone()
        .map(|s| view! { <span class="muted">{format!(" · keys {s}")}</span> });
    let byok_note = (!platform && !row.byok_allowed && row.key.is_none()).then(|| {
        view! {
            <p class="muted">"BYOK is off for this provider: requests use the platform key."</p>
        }
    });
    let body = match row.key.clone() {
        Some(key) => {
            let facts = view! {
                <dl class="facts">
                    <dt>"Key"</dt><dd><code data-testid=format!("hint-{pid}")>{key.hint.clone()}</code></dd>
                    <dt>"Status"</dt><dd>{state_badge(key.state)}</dd>
                    <dt>"Default model"</dt>
                    <dd>{key.default_model.clone().or(p.default_model.clone()).unwrap_or_else(|| "set per request".into())}</dd>
                    {key.base_url.clone().map(|u| view! { <dt>"Base URL"</dt><dd><code>{u}</code></dd> })}
                    <dt>"Sends to"</dt>
                    <dd><code data-testid=format!("destination-{pid}")>{key.destination.clone()}</code></dd>
                    <dt>"Added"</dt>
                    <dd>{format!("{}{}", key.created_at, key.created_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default())}</dd>
                    <dt>"Last used"</dt><dd>{key.last_used_at.clone().unwrap_or_else(|| "never".into())}</dd>
                    <dt>"Last tested"</dt><dd>{key.last_tested_at.clone().unwrap_or_else(|| "never".into())}</dd>
                    {key.last_error.clone().map(|e| view! {
                        <dt>"Last error"</dt>
                        <dd class="error">{format!("{} — {} ({})", e.class.label(), e.message, e.at)}</dd>
                    })}
                </dl>
            };
            let controls = manage.then(|| {
                view! {
                    <KeyControls scope provider=pid.clone() key_id=key.id.clone()
                        disabled=key.state == KeyState::Disabled custom=p.base_url.is_none()
                        reload states/>
                }
            });
            view! { {facts} {controls} }.into_any()
        }
        None => {
            let add = manage.then(|| view! {
                <AddForm scope provider=pid.clone() provider_name=p.name.clone()
                    custom=p.base_url.is_none() default_model=p.default_model.clone()
                    destination=p.base_url.as_deref().map(keyward::keys::destination_host) reload states/>
            });
            view! { <p class="muted">"No key."</p> {add} }.into_any()
        }
    };
    view! {
        <li class="card key-row" aria-labelledby=labelled_by>
            <div class="card-head">
                <h2 id=heading_id>{p.name.clone()}</h2>
                <span>{get_key}{shape}</span>
            </div>
            {byok_note}
            {body}
            {move || {
                let s = state.get();
                view! {
                    {s.busy.map(|b| view! { <p aria-busy="true" class="muted">{b}</p> })}
                    {s.result.map(|r| match r {
                        Ok(m) => view! { <p role="status" class="ok">{m}</p> }.into_any(),
                        Err(m) => view! { <p role="alert" class="error">{m}</p> }.into_any(),
                    })}
                }
            }}
        </li>
    }
}

#[component]
fn AddForm(
    scope: KeyScope,
    provider: String,
    provider_name: String,
    custom: bool,
    default_model: Option<String>,
    /// Where a key added here is sent (`None`: Custom, the owner gives the URL).
    destination: Option<String>,
    reload: RwSignal<u32>,
    states: States,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let busy = Memo::new({
        let provider = provider.clone();
        move |_| {
            states
                .get()
                .get(&provider)
                .is_some_and(|s| s.busy.is_some())
        }
    });
    let test = {
        let provider = provider.clone();
        move |_| {
            let Some(input) = form_input::<TestNewKey>(form) else {
                return;
            };
            let provider = provider.clone();
            set_state(states, &provider, |s| {
                s.busy = Some("Testing the key with the provider…");
                s.result = None;
            });
            spawn_local(async move {
                let r = test_new_key(input.scope, input.provider, input.key, input.base_url).await;
                set_state(states, &provider, |s| {
                    s.busy = None;
                    s.result = Some(match r {
                        Ok(t) => test_message(&t),
                        Err(e) => Err(e.to_string()),
                    });
                });
            });
        }
    };
    let on_submit = {
        let provider = provider.clone();
        move |ev: web_sys::SubmitEvent| {
            ev.prevent_default();
            let Some(input) = form_input::<AddKey>(form) else {
                return;
            };
            let provider = provider.clone();
            set_state(states, &provider, |s| {
                s.busy = Some("Saving…");
                s.result = None;
            });
            spawn_local(async move {
                let r = add_key(
                    input.scope,
                    input.provider,
                    input.key,
                    input.default_model,
                    input.base_url,
                )
                .await;
                set_state(states, &provider, |s| {
                    s.busy = None;
                    s.result = Some(match r {
                        Ok(k) => Ok(format!("Saved. The key shows as {}.", k.hint)),
                        Err(e) => Err(e.to_string()),
                    });
                });
                reload.update(|n| *n += 1);
            });
        }
    };
    let key_id = format!("key-{provider}");
    let model_id = format!("model-{provider}");
    let url_id = format!("url-{provider}");
    view! {
        <form node_ref=form method="post" action=AddKey::url() class="stack narrow" on:submit=on_submit>
            <input type="hidden" name="scope" value=scope.to_string()/>
            <input type="hidden" name="provider" value=provider.clone()/>
            <label for=key_id.clone()>{format!("{provider_name} API key")}</label>
            <input id=key_id type="password" name="key" required autocomplete="off" spellcheck="false"/>
            {destination.map(|d| view! {
                <p class="muted" data-testid=format!("sends-to-{provider}")>
                    "Keys added here are sent to " <code>{d}</code>
                </p>
            })}
            {if custom {
                view! {
                    <label for=url_id.clone()>"Base URL (https)"</label>
                    <input id=url_id type="url" name="base_url" required placeholder="https://llm.example.com/v1"/>
                }.into_any()
            } else {
                view! { <input type="hidden" name="base_url" value=""/> }.into_any()
            }}
            <label for=model_id.clone()>"Default model (optional)"</label>
            <input id=model_id type="text" name="default_model" placeholder=default_model.unwrap_or_default()/>
            <div>
                <button class="button secondary" type="button" on:click=test disabled=move || busy.get()>
                    {format!("Test {provider_name} key")}
                </button>
                " "
                <button class="button" type="submit" disabled=move || busy.get()>
                    {format!("Save {provider_name} key")}
                </button>
            </div>
        </form>
    }
}

#[component]
fn KeyControls(
    scope: KeyScope,
    provider: String,
    key_id: String,
    disabled: bool,
    custom: bool,
    reload: RwSignal<u32>,
    states: States,
) -> impl IntoView {
    let busy = Memo::new({
        let provider = provider.clone();
        move |_| {
            states
                .get()
                .get(&provider)
                .is_some_and(|s| s.busy.is_some())
        }
    });
    let open = Memo::new({
        let provider = provider.clone();
        move |_| states.get().get(&provider).and_then(|s| s.open)
    });
    let run = {
        let provider = provider.clone();
        move |label: &'static str, fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>>>>| {
            let provider = provider.clone();
            set_state(states, &provider, |s| { s.busy = Some(label); s.result = None; });
            spawn_local(async move {
                let r = fut.await;
                set_state(states, &provider, |s| { s.busy = None; s.result = Some(r); s.open = None; });
                reload.update(|n| *n += 1);
            });
        }
    };
    // The page's own key ids always parse; a malformed one would be "not found" anyway.
    let id: Result<KeyId, String> = key_id.parse().map_err(|_| AppError::NotFound.to_string());
    let (id1, id2, id3) = (id.clone(), id.clone(), id);
    let run1 = run.clone();
    let on_test = move |_| {
        let id = id1.clone();
        run1(
            "Testing the key with the provider…",
            Box::pin(async move {
                match test_saved_key(scope, id?).await {
                    Ok(t) => test_message(&t),
                    Err(e) => Err(e.to_string()),
                }
            }),
        );
    };
    let run2 = run.clone();
    let on_toggle = move |_| {
        let id = id2.clone();
        run2(
            if disabled {
                "Enabling…"
            } else {
                "Disabling…"
            },
            Box::pin(async move {
                set_key_enabled(scope, id?, disabled)
                    .await
                    .map(|()| {
                        if disabled {
                            "Enabled.".to_string()
                        } else {
                            "Disabled: the key is kept but not used.".to_string()
                        }
                    })
                    .map_err(|e| e.to_string())
            }),
        );
    };
    let run3 = run.clone();
    let on_delete = move |_| {
        #[cfg(feature = "hydrate")]
        if !window()
            .confirm_with_message("Delete this key? It is erased from the vault.")
            .unwrap_or(false)
        {
            return;
        }
        let id = id3.clone();
        run3(
            "Deleting…",
            Box::pin(async move {
                delete_key(scope, id?)
                    .await
                    .map(|()| "Deleted.".to_string())
                    .map_err(|e| e.to_string())
            }),
        );
    };
    let toggle_replace = {
        let provider = provider.clone();
        move |_| {
            set_state(states, &provider, |s| {
                s.open = if s.open.is_some() {
                    None
                } else {
                    Some("replace")
                };
            })
        }
    };
    let form = NodeRef::<html::Form>::new();
    let run4 = run.clone();
    let on_replace = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(input) = form_input::<ReplaceKey>(form) else {
            return;
        };
        run4(
            "Testing the new key, then replacing…",
            Box::pin(async move {
                replace_key(
                    input.scope,
                    input.key_id,
                    input.provider,
                    input.key,
                    input.default_model,
                    input.base_url,
                )
                .await
                .map(|t| {
                    format!(
                        "Replaced. The new key passed its test ({} ms).",
                        t.latency_ms
                    )
                })
                .map_err(|e| e.to_string())
            }),
        );
    };
    let new_key_id = format!("new-key-{provider}");
    let url_id = format!("new-url-{provider}");
    view! {
        <div class="row-actions">
            <button class="button secondary" type="button" on:click=on_test disabled=move || busy.get()>"Test"</button>
            <button class="button secondary" type="button" on:click=toggle_replace
                aria-expanded=move || open.get().is_some().to_string()>"Replace"</button>
            <button class="button secondary" type="button" on:click=on_toggle disabled=move || busy.get()>
                {if disabled { "Enable" } else { "Disable" }}
            </button>
            <button class="button danger" type="button" on:click=on_delete disabled=move || busy.get()>"Delete"</button>
        </div>
        <Show when=move || open.get().is_some()>
            <form node_ref=form method="post" action=ReplaceKey::url() class="stack narrow" on:submit=on_replace.clone()>
                <input type="hidden" name="scope" value=scope.to_string()/>
                <input type="hidden" name="key_id" value=key_id.clone()/>
                <input type="hidden" name="provider" value=provider.clone()/>
                <input type="hidden" name="default_model" value=""/>
                <label for=new_key_id.clone()>"New key"</label>
                <input id=new_key_id.clone() type="password" name="key" required autocomplete="off" spellcheck="false"/>
                {if custom {
                    view! {
                        <label for=url_id.clone()>"Base URL (https)"</label>
                        <input id=url_id.clone() type="url" name="base_url" required/>
                    }.into_any()
                } else {
                    view! { <input type="hidden" name="base_url" value=""/> }.into_any()
                }}
                <p class="muted">"The new key is tested with the provider first; if it fails, the current key stays in use."</p>
                <button class="button" type="submit" disabled=move || busy.get()>"Test and replace"</button>
            </form>
        </Show>
    }
}
