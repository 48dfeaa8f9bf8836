//! Chatbots of the current workspace: owners and admins create and delete them; everyone sees
//! them, change every setting (prompt, greeting, provider and model, temperature, max tokens,
//! the models visitors may switch to, the daily cap, public or not). Each chatbot may hold its
//! own keys (`/chatbots/{id}/keys`), which override the workspace's for that chatbot. Its
//! public chat page is `/chat/{workspace-slug}/{chatbot-slug}`.

use super::keys::KeysView;
use crate::api::{CreateChatbot, create_chatbot, delete_chatbot, get_chatbots, update_chatbot};
use crate::auth::{RequireAuth, use_me_memo};
use keyward::catalogue::PROVIDERS;
use keyward::dto::{ChatbotUpdate, ChatbotView, ChatbotsPage};
use leptos::form::FromFormData;
use leptos::html;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos::web_sys;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn Chatbots() -> impl IntoView {
    view! {
        <Title text="Chatbots"/>
        <RequireAuth>
            <WorkspaceChatbots/>
        </RequireAuth>
    }
}

#[component]
fn WorkspaceChatbots() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <ChatbotList ws/> }.into_any(),
        None => view! { <h1>"Chatbots"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
fn ChatbotList(ws: String) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let message = RwSignal::new(None::<Result<String, String>>);
    let page = Resource::new(move || reload.get(), {
        let ws = ws.clone();
        move |_| get_chatbots(ws.clone())
    });
    view! {
        <h1>"Chatbots"</h1>
        <p class="muted">"Assistants your visitors chat with. A chatbot can have keys of its own; they take precedence over the workspace's keys for it."</p>
        {move || message.get().map(|m| match m {
            Ok(m) => view! { <p role="status" class="ok">{m}</p> }.into_any(),
            Err(m) => view! { <p role="alert" class="error">{m}</p> }.into_any(),
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => view! { <Body page=p reload message/> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn Body(
    page: ChatbotsPage,
    reload: RwSignal<u32>,
    message: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let ws = page.workspace.id.clone();
    let ws_slug = page.workspace.slug.clone();
    let manage = page.can_manage;
    let editing = RwSignal::new(None::<ChatbotView>);
    let list = if page.chatbots.is_empty() {
        view! { <p class="muted">"No chatbots yet."</p> }.into_any()
    } else {
        view! {
            <table class="table" aria-label="Chatbots">
                <thead><tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Address"</th>
                    <th scope="col">"Provider and model"</th>
                    <th scope="col">"Visibility"</th>
                    <th scope="col">"Actions"</th>
                </tr></thead>
                <tbody>
                    {page.chatbots.into_iter().map(|c| {
                        let (ws, id, name) = (ws.clone(), c.id.clone(), c.name.clone());
                        let chat_url = format!("/chat/{}/{}", ws_slug, c.slug);
                        let edit_bot = c.clone();
                        let on_delete = move |_| {
                            #[cfg(feature = "hydrate")]
                            if !window().confirm_with_message("Delete this chatbot and its own keys?").unwrap_or(false) {
                                return;
                            }
                            let (ws, id, name) = (ws.clone(), id.clone(), name.clone());
                            spawn_local(async move {
                                let r = delete_chatbot(ws, id).await;
                                message.set(Some(r.map(|()| format!("Deleted {name}.")).map_err(|e| e.to_string())));
                                reload.update(|n| *n += 1);
                            });
                        };
                        view! {
                            <tr>
                                <td>{c.name.clone()}</td>
                                <td><a href=chat_url.clone()><code>{chat_url.clone()}</code></a></td>
                                <td>{format!("{} / {}", c.provider, c.model.clone().unwrap_or_else(|| "default model".into()))}</td>
                                <td>{if c.public { "Public" } else { "Private" }}</td>
                                <td class="actions">
                                    <a href=format!("/chatbots/{}/keys", c.id)>{format!("Keys of {}", c.name)}</a>
                                    {manage.then(|| view! {
                                        " "
                                        <button class="button secondary" type="button" on:click=move |_| editing.set(Some(edit_bot.clone()))>
                                            {format!("Edit {}", c.name)}
                                        </button>
                                        " "
                                        <button class="button danger" type="button" on:click=on_delete.clone()>
                                            {format!("Delete {}", c.name)}
                                        </button>
                                    })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }.into_any()
    };
    view! {
        <section class="card" aria-labelledby="bots-heading">
            <h2 id="bots-heading">"Your chatbots"</h2>
            {list}
        </section>
        {let ws = ws.clone(); move || editing.get().map(|bot| {
            let ws = ws.clone();
            view! { <EditForm ws bot editing reload message/> }
        })}
        {manage.then(|| view! { <CreateForm ws=ws.clone() reload message/> })}
    }
}

/// Every setting of one chatbot.
#[component]
fn EditForm(
    ws: String,
    bot: ChatbotView,
    editing: RwSignal<Option<ChatbotView>>,
    reload: RwSignal<u32>,
    message: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let id = bot.id.clone();
    let on_submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(f) = form.get_untracked() else {
            return;
        };
        let Ok(data) = web_sys::FormData::new_with_form(&f) else {
            return;
        };
        let text = |name: &str| data.get(name).as_string().unwrap_or_default();
        let number = |name: &str| text(name).trim().parse::<f64>();
        let (Ok(temperature), Ok(max_tokens), Ok(daily_cap)) = (
            number("temperature"),
            number("max_tokens"),
            number("daily_cap"),
        ) else {
            message.set(Some(Err(
                "temperature, max tokens and the daily cap are numbers".into(),
            )));
            return;
        };
        if max_tokens.fract() != 0.0
            || daily_cap.fract() != 0.0
            || max_tokens < 0.0
            || daily_cap < 0.0
        {
            message.set(Some(Err(
                "max tokens and the daily cap are whole numbers".into()
            )));
            return;
        }
        let update = ChatbotUpdate {
            name: text("name"),
            provider: text("provider"),
            model: text("model"),
            system_prompt: text("system_prompt"),
            greeting: text("greeting"),
            temperature,
            max_tokens: max_tokens.min(f64::from(u32::MAX)) as u32,
            public: data.get("public").as_string().is_some(),
            allowed_models: text("allowed_models")
                .split(['\n', ','])
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
            daily_cap: daily_cap.min(f64::from(u32::MAX)) as u32,
            allowed_sites: text("allowed_sites")
                .split(['\n', ',', ' '])
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
        };
        let (ws, id) = (ws.clone(), id.clone());
        spawn_local(async move {
            match update_chatbot(ws, id, update).await {
                Ok(c) => {
                    message.set(Some(Ok(format!("Saved {}.", c.name))));
                    editing.set(None);
                    reload.update(|n| *n += 1);
                }
                Err(e) => message.set(Some(Err(e.to_string()))),
            }
        });
    };
    let provider = bot.provider.clone();
    view! {
        <section class="card narrow" aria-labelledby="edit-bot-heading">
            <h2 id="edit-bot-heading">{format!("Edit {}", bot.name)}</h2>
            <form node_ref=form class="stack" on:submit=on_submit>
                <label>"Chatbot name" <input type="text" name="name" required maxlength="80" value=bot.name.clone()/></label>
                <label>"Provider"
                    <select name="provider">
                        {PROVIDERS.iter().map(|p| view! { <option value=p.id selected=p.id == provider>{p.name}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Model (optional)" <input type="text" name="model" placeholder="the key's default" value=bot.model.clone().unwrap_or_default()/></label>
                <label>"System prompt" <textarea name="system_prompt" rows="4" prop:value=bot.system_prompt.clone()></textarea></label>
                <label>"Greeting" <input type="text" name="greeting" value=bot.greeting.clone()/></label>
                <div class="row">
                    <label>"Temperature (0–2)" <input type="number" name="temperature" min="0" max="2" step="0.1" required value=bot.temperature.to_string()/></label>
                    <label>"Max tokens" <input type="number" name="max_tokens" min="1" step="1" required value=bot.max_tokens.to_string()/></label>
                    <label>"Daily message cap (0: none)" <input type="number" name="daily_cap" min="0" step="1" required value=bot.daily_cap.to_string()/></label>
                </div>
                <label>"Models visitors may switch to, one per line (provider/model)"
                    <textarea name="allowed_models" rows="3" placeholder="openai/gpt-4o-mini" prop:value=bot.allowed_models.join("\n")></textarea>
                </label>
                <label>"Sites that may embed the chat page, one per line (origins such as https://www.example.com; empty: none)"
                    <textarea name="allowed_sites" rows="2" placeholder="https://www.example.com" prop:value=bot.allowed_sites.join("\n")></textarea>
                </label>
                <label class="check"><input type="checkbox" name="public" checked=bot.public/> "Public: visitors can chat without an account"</label>
                <div class="row">
                    <button class="button" type="submit">"Save chatbot"</button>
                    <button class="button secondary" type="button" on:click=move |_| editing.set(None)>"Cancel"</button>
                </div>
            </form>
        </section>
    }
}

#[component]
fn CreateForm(
    ws: String,
    reload: RwSignal<u32>,
    message: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let on_submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(f) = form.get_untracked() else {
            return;
        };
        let Ok(data) = web_sys::FormData::new_with_form(&f) else {
            return;
        };
        let public = data.get("public").as_string().is_some();
        data.delete("public");
        let Ok(input) = CreateChatbot::from_form_data(&data) else {
            return;
        };
        spawn_local(async move {
            let r = create_chatbot(
                input.workspace_id,
                input.name,
                input.provider,
                input.model,
                input.system_prompt,
                input.greeting,
                public,
            )
            .await;
            message.set(Some(
                r.map(|c| format!("Created {} at /{}.", c.name, c.slug))
                    .map_err(|e| e.to_string()),
            ));
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="card narrow" aria-labelledby="new-bot-heading">
            <h2 id="new-bot-heading">"New chatbot"</h2>
            <form node_ref=form method="post" action=CreateChatbot::url() class="stack" on:submit=on_submit>
                <input type="hidden" name="workspace_id" value=ws/>
                <label>"Chatbot name" <input type="text" name="name" required maxlength="80"/></label>
                <label>"Provider"
                    <select name="provider">
                        {PROVIDERS.iter().map(|p| view! { <option value=p.id>{p.name}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Model (optional)" <input type="text" name="model" placeholder="the key's default"/></label>
                <label>"System prompt" <textarea name="system_prompt" rows="3"></textarea></label>
                <label>"Greeting" <input type="text" name="greeting"/></label>
                <label class="check"><input type="checkbox" name="public"/> "Public: visitors can chat without an account"</label>
                <button class="button" type="submit">"Create chatbot"</button>
            </form>
        </section>
    }
}

/// `/chatbots/{id}/keys`: the chatbot's own keys.
#[component]
pub fn ChatbotKeys() -> impl IntoView {
    view! {
        <Title text="Chatbot keys"/>
        <RequireAuth>
            <ChatbotKeysInner/>
        </RequireAuth>
    }
}

#[component]
fn ChatbotKeysInner() -> impl IntoView {
    let me = use_me_memo();
    let params = use_params_map();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    let bot = Memo::new(move |_| params.get().get("id").unwrap_or_default());
    move || match current.get() {
        Some(ws) => view! {
            <p><a href="/chatbots">"← Chatbots"</a></p>
            <KeysView workspace_id=ws title="Chatbot keys" chatbot_id=bot.get()/>
        }
        .into_any(),
        None => {
            view! { <h1>"Chatbot keys"</h1><p>"You are not in a workspace yet."</p> }.into_any()
        }
    }
}
