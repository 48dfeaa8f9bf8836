//! Chatbots of the current workspace: owners and admins create and delete them; everyone sees
//! them. Each chatbot may hold its own keys (`/chatbots/{id}/keys`), which override the
//! workspace's for that chatbot. The visitor playground arrives with the chat pages.

use super::keys::KeysView;
use crate::api::{CreateChatbot, create_chatbot, delete_chatbot, get_chatbots};
use crate::auth::{RequireAuth, use_me_memo};
use keyward::catalogue::PROVIDERS;
use keyward::dto::ChatbotsPage;
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
    let manage = page.can_manage;
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
                                <td><code>{format!("/{}", c.slug)}</code></td>
                                <td>{format!("{} / {}", c.provider, c.model.clone().unwrap_or_else(|| "default model".into()))}</td>
                                <td>{if c.public { "Public" } else { "Private" }}</td>
                                <td class="actions">
                                    <a href=format!("/chatbots/{}/keys", c.id)>{format!("Keys of {}", c.name)}</a>
                                    {manage.then(|| view! {
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
        {manage.then(|| view! { <CreateForm ws=ws.clone() reload message/> })}
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
