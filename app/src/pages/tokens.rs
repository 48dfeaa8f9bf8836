//! `/tokens`: the workspace's API tokens, for its own apps calling Keyward's OpenAI- and
//! Anthropic-compatible API. Owners and admins create tokens (named, scoped, optionally bound
//! to a chatbot and expiring; the token is shown once) and revoke them; everyone sees the list
//! (never a token, only its first characters). Owners also choose where a bare model id goes.

use crate::api::{create_api_token, get_api_tokens, revoke_api_token, set_default_provider};
use crate::auth::{RequireAuth, use_me_memo};
use keyward::catalogue::PROVIDERS;
use keyward::tokens::{ApiTokensPage, NewApiToken, TokenScope};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;

#[component]
pub fn Tokens() -> impl IntoView {
    view! {
        <Title text="API tokens"/>
        <RequireAuth>
            <WorkspaceTokens/>
        </RequireAuth>
    }
}

#[component]
fn WorkspaceTokens() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <TokenList ws/> }.into_any(),
        None => view! { <h1>"API tokens"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

type Message = RwSignal<Option<Result<String, String>>>;

#[component]
fn TokenList(ws: String) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let message: Message = RwSignal::new(None);
    let created = RwSignal::new(None::<String>);
    let page = Resource::new(move || reload.get(), {
        let ws = ws.clone();
        move |_| get_api_tokens(ws.clone())
    });
    view! {
        <h1>"API tokens"</h1>
        <p class="muted">
            "Your own apps call Keyward with a token, using the official OpenAI or Anthropic SDK unchanged: base URL "
            <code>"/v1"</code>", model "<code>"provider/model"</code>" (for example "<code>"openai/gpt-4o-mini"</code>
            "). Requests use this workspace's keys and are metered like every other."
        </p>
        {move || message.get().map(|m| match m {
            Ok(m) => view! { <p role="status" class="ok">{m}</p> }.into_any(),
            Err(m) => view! { <p role="alert" class="error">{m}</p> }.into_any(),
        })}
        {move || created.get().map(|t| view! {
            <section class="card" aria-labelledby="new-token-heading">
                <h2 id="new-token-heading">"Your new token"</h2>
                <p>"Copy it now: it is shown only this once and cannot be recovered."</p>
                <p><output class="secret" aria-label="New API token"><code>{t}</code></output></p>
                <button class="button secondary" type="button" on:click=move |_| created.set(None)>"I have copied it"</button>
            </section>
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => view! { <Body page=p reload message created/> }.into_any(),
            })}
        </Transition>
    }
}

fn scope_label(s: TokenScope) -> &'static str {
    match s {
        TokenScope::Chat => "chat",
        TokenScope::Models => "models",
        TokenScope::Management => "management",
    }
}

#[component]
fn Body(
    page: ApiTokensPage,
    reload: RwSignal<u32>,
    message: Message,
    created: RwSignal<Option<String>>,
) -> impl IntoView {
    let ws = page.workspace.id.clone();
    let manage = page.can_manage;
    let bots = page.chatbots.clone();
    let bot_name = move |id: &Option<String>| {
        id.as_ref().map_or_else(
            || "—".to_string(),
            |id| {
                bots.iter()
                    .find(|(b, _)| b == id)
                    .map_or_else(|| "(deleted)".into(), |(_, n)| n.clone())
            },
        )
    };
    let list = if page.tokens.is_empty() {
        view! { <p class="muted">"No tokens yet."</p> }.into_any()
    } else {
        view! {
            <table class="table" aria-label="API tokens">
                <thead><tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Token"</th>
                    <th scope="col">"Scopes"</th>
                    <th scope="col">"Chatbot"</th>
                    <th scope="col">"Last used"</th>
                    <th scope="col">"Expires"</th>
                    <th scope="col">"Status"</th>
                    {manage.then(|| view! { <th scope="col">"Actions"</th> })}
                </tr></thead>
                <tbody>
                    {page.tokens.into_iter().map(|t| {
                        let status = if t.revoked { "Revoked" } else if t.expired { "Expired" } else { "Active" };
                        let live = !t.revoked && !t.expired;
                        let (ws, id, name) = (ws.clone(), t.id.clone(), t.name.clone());
                        let on_revoke = move |_| {
                            #[cfg(feature = "hydrate")]
                            if !window().confirm_with_message("Revoke this token? Apps using it stop working at once.").unwrap_or(false) {
                                return;
                            }
                            let (ws, id, name) = (ws.clone(), id.clone(), name.clone());
                            spawn_local(async move {
                                let r = revoke_api_token(ws, id).await;
                                message.set(Some(r.map(|()| format!("Revoked {name}.")).map_err(|e| e.to_string())));
                                reload.update(|n| *n += 1);
                            });
                        };
                        view! {
                            <tr>
                                <td>{t.name.clone()}</td>
                                <td><code>{t.shown.clone()}</code></td>
                                <td>{t.scopes.iter().map(|s| scope_label(*s)).collect::<Vec<_>>().join(", ")}</td>
                                <td>{bot_name(&t.chatbot_id)}</td>
                                <td>{t.last_used_at.clone().unwrap_or_else(|| "never".into())}</td>
                                <td>{t.expires_at.clone().unwrap_or_else(|| "never".into())}</td>
                                <td>{status}</td>
                                {manage.then(|| view! {
                                    <td class="actions">
                                        {live.then(|| view! {
                                            <button class="button danger" type="button" on:click=on_revoke.clone()>
                                                {format!("Revoke {}", t.name)}
                                            </button>
                                        })}
                                    </td>
                                })}
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }.into_any()
    };
    view! {
        <section class="card" aria-labelledby="tokens-heading">
            <h2 id="tokens-heading">"Tokens"</h2>
            {list}
        </section>
        {manage.then(|| view! { <CreateForm ws=ws.clone() chatbots=page.chatbots.clone() reload message created/> })}
        <DefaultProvider ws=ws.clone() current=page.default_provider.clone() can_set=page.can_set_default message reload/>
    }
}

#[component]
fn CreateForm(
    ws: String,
    chatbots: Vec<(String, String)>,
    reload: RwSignal<u32>,
    message: Message,
    created: RwSignal<Option<String>>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let chat = RwSignal::new(true);
    let models = RwSignal::new(true);
    let management = RwSignal::new(false);
    let chatbot = RwSignal::new(String::new());
    let expiry = RwSignal::new(String::new());
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let scopes: Vec<TokenScope> = [
            (chat.get_untracked(), TokenScope::Chat),
            (models.get_untracked(), TokenScope::Models),
            (management.get_untracked(), TokenScope::Management),
        ]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
        .collect();
        let new = NewApiToken {
            name: name.get_untracked(),
            scopes,
            chatbot_id: chatbot.get_untracked(),
            expires_in_days: expiry.get_untracked().parse().ok(),
        };
        let ws = ws.clone();
        spawn_local(async move {
            match create_api_token(ws, new).await {
                Ok(c) => {
                    message.set(Some(Ok(format!("Created {}.", c.view.name))));
                    created.set(Some(c.token));
                    name.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) => message.set(Some(Err(e.to_string()))),
            }
        });
    };
    view! {
        <section class="card narrow" aria-labelledby="create-token-heading">
            <h2 id="create-token-heading">"New token"</h2>
            <form class="stack" on:submit=on_submit>
                <label>"Token name"
                    <input type="text" required maxlength="80" prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))/>
                </label>
                <fieldset>
                    <legend>"Scopes"</legend>
                    <label class="check"><input type="checkbox" prop:checked=move || chat.get() on:change=move |ev| chat.set(event_target_checked(&ev))/>
                        " chat: /v1/chat/completions and /v1/messages"</label>
                    <label class="check"><input type="checkbox" prop:checked=move || models.get() on:change=move |ev| models.set(event_target_checked(&ev))/>
                        " models: /v1/models"</label>
                    <label class="check"><input type="checkbox" prop:checked=move || management.get() on:change=move |ev| management.set(event_target_checked(&ev))/>
                        " management: the REST API /api/v1"</label>
                </fieldset>
                <label>"Chatbot (its keys come first)"
                    <select on:change=move |ev| chatbot.set(event_target_value(&ev))>
                        <option value="">"None: the workspace's keys"</option>
                        {chatbots.into_iter().map(|(id, n)| view! { <option value=id>{n}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Expires"
                    <select on:change=move |ev| expiry.set(event_target_value(&ev))>
                        <option value="">"Never"</option>
                        <option value="30">"In 30 days"</option>
                        <option value="90">"In 90 days"</option>
                        <option value="365">"In a year"</option>
                    </select>
                </label>
                <button class="button" type="submit">"Create token"</button>
            </form>
        </section>
    }
}

#[component]
fn DefaultProvider(
    ws: String,
    current: Option<String>,
    can_set: bool,
    message: Message,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let label = current
        .as_deref()
        .and_then(keyward::catalogue::provider)
        .map_or("Automatic: the first provider with one of your keys", |p| {
            p.name
        });
    if !can_set {
        return view! {
            <section class="card narrow" aria-labelledby="default-provider-heading">
                <h2 id="default-provider-heading">"Bare model ids"</h2>
                <p>"A model id without a provider goes to: " {label}</p>
            </section>
        }
        .into_any();
    }
    let chosen = RwSignal::new(current.clone().unwrap_or_default());
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let ws = ws.clone();
        let p = chosen.get_untracked();
        spawn_local(async move {
            let r = set_default_provider(ws, p).await;
            message.set(Some(
                r.map(|()| "Saved the default provider.".to_string())
                    .map_err(|e| e.to_string()),
            ));
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="card narrow" aria-labelledby="default-provider-heading">
            <h2 id="default-provider-heading">"Bare model ids"</h2>
            <form class="stack" on:submit=on_submit>
                <label>"A model id without a provider goes to"
                    <select on:change=move |ev| chosen.set(event_target_value(&ev))>
                        <option value="" selected=current.is_none()>"Automatic: the first provider with one of your keys"</option>
                        {PROVIDERS.iter().map(|p| {
                            let selected = current.as_deref() == Some(p.id);
                            view! { <option value=p.id selected=selected>{p.name}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <button class="button" type="submit">"Save default provider"</button>
            </form>
        </section>
    }
    .into_any()
}
