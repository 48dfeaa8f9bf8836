//! Chat: the public chat page of a chatbot (`/chat/{workspace}/{chatbot}`, no account needed for
//! public chatbots) and the dashboard playground (`/playground`, members: any chatbot, any
//! model, with the key source, tokens and latency of every reply). Both use [`ChatPanel`]: the
//! reply streams in token by token, a stop button aborts it, the model can be switched (for one
//! message on the public page), and Markdown is rendered without letting any HTML through.

use crate::api::{get_chat_page, get_playground};
use crate::auth::{RequireAuth, use_me_memo};
use keyward::chat::{ChatMessageView, ChatRole, MessageStatus, group_label, model_id};
use keyward::dto::ModelOption;
use keyward::markdown::to_safe_html;
use keyward::resolve::KeySource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// `/chat/{workspace}/{chatbot}`: a visitor chats with a chatbot.
#[component]
pub fn VisitorChat() -> impl IntoView {
    let params = use_params_map();
    let page = Resource::new(
        move || {
            let p = params.get();
            (
                p.get("workspace").unwrap_or_default(),
                p.get("chatbot").unwrap_or_default(),
            )
        },
        |(ws, bot)| get_chat_page(ws, bot),
    );
    view! {
        <Suspense fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(crate::error::AppError::NotFound) => {
                    #[cfg(feature = "ssr")]
                    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                        response.set_status(http::StatusCode::NOT_FOUND);
                    }
                    view! {
                    <Title text="Chat not found"/>
                    <section class="chat-missing card narrow">
                        <h1>"This chat does not exist"</h1>
                        <p>"The address may be mistyped, or the chatbot is no longer public."</p>
                    </section>
                }.into_any()
                }
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => {
                    let endpoint = keyward::http::chat_endpoint(&p.workspace_slug, &p.chatbot_slug);
                    view! {
                        <Title text=p.chatbot_name.clone()/>
                        <div class="chat-page">
                            <header class="chat-header">
                                <h1>{p.chatbot_name.clone()}</h1>
                                <p class="muted">{p.workspace_name.clone()}</p>
                            </header>
                            <ChatPanel
                                endpoint
                                models=p.models
                                default_model=p.default_model
                                greeting=p.greeting
                                conversation=p.conversation
                                messages=p.messages
                                members=false
                            />
                        </div>
                    }.into_any()
                }
            })}
        </Suspense>
    }
}

/// `/playground`: members try any chatbot and model of their workspace.
#[component]
pub fn Playground() -> impl IntoView {
    view! {
        <Title text="Playground"/>
        <RequireAuth>
            <WorkspacePlayground/>
        </RequireAuth>
    }
}

#[component]
fn WorkspacePlayground() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <PlaygroundFor ws/> }.into_any(),
        None => view! { <h1>"Playground"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
fn PlaygroundFor(ws: String) -> impl IntoView {
    let chatbot = RwSignal::new(String::new());
    let page = Resource::new(move || chatbot.get(), {
        let ws = ws.clone();
        move |bot: String| {
            let ids = ws.parse().and_then(|ws: keyward::ids::WorkspaceId| {
                // The select's empty choice: the workspace's own keys.
                let bot = (!bot.is_empty()).then(|| bot.parse()).transpose()?;
                Ok((ws, bot))
            });
            async move {
                let (ws, bot) = ids?;
                get_playground(ws, bot).await
            }
        }
    });
    view! {
        <h1>"Playground"</h1>
        <p class="muted">"Chat with any model your workspace can use. Each reply shows which key served it — the chatbot's own, the workspace's, or the platform's — with its tokens and latency."</p>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => {
                    let endpoint = keyward::http::playground_endpoint(&p.workspace.id);
                    let selected = p.chatbot.clone().unwrap_or_default();
                    view! {
                        <div class="playground-bar">
                            <label>"Chatbot "
                                <select
                                    name="chatbot"
                                    on:change=move |ev| chatbot.set(event_target_value(&ev))
                                >
                                    <option value="" selected=selected.is_empty()>"None — the workspace's keys"</option>
                                    {p.chatbots.iter().map(|c| view! {
                                        <option value=c.id.clone() selected=c.id == selected>{c.name.clone()}</option>
                                    }).collect_view()}
                                </select>
                            </label>
                        </div>
                        {p.models.is_empty().then(|| view! {
                            <p class="error" role="alert">"No key serves any provider yet: add one on the Keys page."</p>
                        })}
                        <ChatPanel
                            endpoint
                            models=p.models
                            default_model=p.default_model
                            chatbot=p.chatbot
                            members=true
                        />
                    }.into_any()
                }
            })}
        </Transition>
    }
}

fn source_label(s: KeySource) -> &'static str {
    match s {
        KeySource::Chatbot => "chatbot key",
        KeySource::Workspace => "workspace key",
        KeySource::Platform => "platform key",
    }
}

/// The line under a reply, for members: model, key source, tokens, latency.
fn meta_line(m: &ChatMessageView) -> String {
    let mut parts = Vec::new();
    if let (Some(p), Some(model)) = (&m.provider, &m.model) {
        parts.push(format!("{p} / {model}"));
    }
    if let Some(s) = m.source {
        parts.push(source_label(s).to_string());
    }
    if let (Some(i), Some(o)) = (m.input_tokens, m.output_tokens) {
        parts.push(format!("{i} in / {o} out tokens"));
    }
    if let Some(f) = m.first_token_ms {
        parts.push(format!("first token {f} ms"));
    }
    if let Some(l) = m.latency_ms {
        parts.push(format!("{l} ms"));
    }
    parts.join(" · ")
}

#[component]
fn Message(message: ChatMessageView, members: bool) -> impl IntoView {
    let role = match message.role {
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    };
    let status = message.status.as_str();
    let html = to_safe_html(&message.content);
    let note = match message.status {
        MessageStatus::Stopped => Some("Stopped."),
        MessageStatus::Error => Some("This reply failed."),
        MessageStatus::Ok => None,
    };
    let meta = (members && message.role == ChatRole::Assistant).then(|| meta_line(&message));
    view! {
        <article class=format!("msg {role}") data-status=status data-model=message.model.clone().unwrap_or_default()>
            <span class="visually-hidden">{if role == "user" { "You said:" } else { "Reply:" }}</span>
            <div class="bubble md" inner_html=html></div>
            {note.map(|n| view! { <p class="msg-note">{n}</p> })}
            {meta.map(|m| view! { <p class="msg-meta">{m}</p> })}
        </article>
    }
}

/// A message shown before (or instead of) its stored copy: what the user just sent, or a reply
/// they stopped.
fn local_message(
    n: usize,
    role: ChatRole,
    content: String,
    status: MessageStatus,
    provider_model: Option<(String, String)>,
) -> ChatMessageView {
    let (provider, model) = provider_model.unzip();
    ChatMessageView {
        id: format!("local-{n}"),
        role,
        content,
        status,
        provider,
        model,
        source: None,
        input_tokens: None,
        output_tokens: None,
        first_token_ms: None,
        latency_ms: None,
    }
}

/// The conversation, the reply being written, and the message box.
#[component]
pub fn ChatPanel(
    endpoint: String,
    models: Vec<ModelOption>,
    default_model: Option<String>,
    #[prop(optional)] greeting: String,
    #[prop(default = None)] conversation: Option<String>,
    #[prop(optional)] messages: Vec<ChatMessageView>,
    /// The dashboard playground's chosen chatbot.
    #[prop(default = None)]
    chatbot: Option<String>,
    /// Members see the key source, tokens and latency, and their model choice sticks; visitors
    /// switch the model for one message.
    members: bool,
) -> impl IntoView {
    let history = RwSignal::new(messages);
    let conversation = RwSignal::new(conversation);
    let input = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // The reply being written: its text, and whether any token has arrived.
    let live_text = RwSignal::new(String::new());
    let default_id = default_model.clone().unwrap_or_default();
    let selected = RwSignal::new(default_id.clone());
    let log = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    let controller = StoredValue::new_local(None::<web_sys::AbortController>);
    let endpoint = StoredValue::new(endpoint);
    let chatbot = StoredValue::new(chatbot);
    let no_models = models.is_empty();

    // Keep the newest message in view.
    Effect::new(move |_| {
        history.track();
        live_text.track();
        if let Some(el) = log.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });

    let send = {
        let default_id = default_id.clone();
        move || {
            let text = input.get_untracked().trim().to_string();
            if text.is_empty() || busy.get_untracked() {
                return;
            }
            let choice = selected.get_untracked();
            let model = if choice.is_empty() || (!members && choice == default_id) {
                None
            } else {
                Some(choice)
            };
            if !members {
                // The switch is for this one message.
                selected.set(default_id.clone());
            }
            let body = keyward::chat::ChatSend {
                message: text.clone(),
                model,
                conversation: conversation.get_untracked(),
                chatbot: chatbot.get_value(),
            };
            input.set(String::new());
            error.set(None);
            history.update(|h| {
                let m = local_message(h.len(), ChatRole::User, text, MessageStatus::Ok, None);
                h.push(m)
            });
            live_text.set(String::new());
            busy.set(true);
            #[cfg(feature = "hydrate")]
            {
                use crate::chat_client::{StreamError, stream_chat};
                use keyward::chat::ChatEvent;
                let Ok(ctrl) = web_sys::AbortController::new() else {
                    busy.set(false);
                    return;
                };
                let signal = ctrl.signal();
                controller.set_value(Some(ctrl));
                let url = endpoint.get_value();
                leptos::task::spawn_local(async move {
                    let mut live_model = None;
                    let mut finished = false;
                    let result = stream_chat(&url, &body, &signal, |ev| match ev {
                        ChatEvent::Start {
                            conversation: c,
                            model,
                            provider,
                            ..
                        } => {
                            conversation.set(Some(c));
                            live_model = Some((provider, model));
                        }
                        ChatEvent::Delta { text } => live_text.update(|t| t.push_str(&text)),
                        ChatEvent::Done { message } => {
                            finished = true;
                            history.update(|h| h.push(message));
                        }
                        ChatEvent::Error {
                            message, stored, ..
                        } => {
                            finished = true;
                            if let Some(s) = stored.filter(|s| !s.content.is_empty()) {
                                history.update(|h| h.push(s));
                            }
                            error.set(Some(message));
                        }
                    })
                    .await;
                    match result {
                        Err(StreamError::Aborted) if !finished => {
                            let text = live_text.get_untracked();
                            let provider_model = live_model.take();
                            history.update(|h| {
                                let m = local_message(
                                    h.len(),
                                    ChatRole::Assistant,
                                    text,
                                    MessageStatus::Stopped,
                                    provider_model,
                                );
                                h.push(m)
                            });
                        }
                        Err(StreamError::Failed(message)) => error.set(Some(message)),
                        _ => {}
                    }
                    controller.set_value(None);
                    live_text.set(String::new());
                    busy.set(false);
                });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (body, endpoint);
        }
    };
    let stop = move || {
        #[cfg(feature = "hydrate")]
        controller.with_value(|c| {
            if let Some(c) = c {
                c.abort();
            }
        });
    };
    let new_conversation = move |_| {
        if busy.get_untracked() {
            return;
        }
        conversation.set(None);
        history.set(Vec::new());
        error.set(None);
    };

    let (yours, platform): (Vec<ModelOption>, Vec<ModelOption>) =
        models.into_iter().partition(|m| m.source.is_byok());
    // The options carry the initial choice (server-rendered); the select's `value` property
    // follows later changes (an option's `selected` attribute stops counting once the user
    // has picked).
    let group = |label: &'static str, list: Vec<ModelOption>| {
        let default_id = default_id.clone();
        (!list.is_empty()).then(|| view! {
            <optgroup label=label>
                {list.into_iter().map(|m| {
                    let id = model_id(&m.provider, &m.model);
                    let text = format!("{} ({}){}", m.model, m.provider, if m.default { " — default" } else { "" });
                    let initial = id == default_id;
                    view! { <option value=id selected=initial>{text}</option> }
                }).collect_view()}
            </optgroup>
        })
    };
    let send_on_submit = send.clone();
    let send_on_enter = send.clone();
    view! {
        <section class="chat" aria-label="Chat">
            <div class="chat-log" role="log" aria-live="polite" aria-busy=move || busy.get().to_string() node_ref=log>
                {(!greeting.is_empty()).then(|| view! {
                    <article class="msg assistant greeting"><div class="bubble md" inner_html=to_safe_html(&greeting)></div></article>
                })}
                <For each=move || history.get() key=|m| m.id.clone() let:m>
                    <Message message=m members/>
                </For>
                <Show when=move || busy.get()>
                    <article class="msg assistant live" data-status=move || if live_text.get().is_empty() { "waiting" } else { "streaming" }>
                        <span class="visually-hidden">"Reply:"</span>
                        {move || if live_text.get().is_empty() {
                            view! { <p class="typing" aria-label="The assistant is thinking">"Thinking…"</p> }.into_any()
                        } else {
                            view! { <div class="bubble md" inner_html=move || to_safe_html(&live_text.get())></div> }.into_any()
                        }}
                    </article>
                </Show>
            </div>
            {move || error.get().map(|e| view! { <p role="alert" class="error chat-error">{e}</p> })}
            <form
                class="chat-form"
                on:submit=move |ev: leptos::web_sys::SubmitEvent| {
                    ev.prevent_default();
                    send_on_submit();
                }
            >
                <label class="visually-hidden" for="chat-input">"Your message"</label>
                <textarea
                    id="chat-input"
                    name="message"
                    rows="2"
                    placeholder="Write a message… (Enter sends, Shift+Enter for a new line)"
                    maxlength=keyward::chat::MAX_MESSAGE_CHARS.to_string()
                    prop:value=move || input.get()
                    on:input=move |ev| input.set(event_target_value(&ev))
                    on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                            ev.prevent_default();
                            send_on_enter();
                        } else if ev.key() == "Escape" {
                            stop();
                        }
                    }
                ></textarea>
                <div class="chat-controls">
                    <label class="model-picker">
                        <span>"Model"</span>
                        <select
                            name="model"
                            disabled=no_models
                            prop:value=move || selected.get()
                            on:change=move |ev| selected.set(event_target_value(&ev))
                        >
                            {group(group_label(KeySource::Workspace), yours)}
                            {group(group_label(KeySource::Platform), platform)}
                        </select>
                    </label>
                    <button type="button" class="button secondary" on:click=new_conversation disabled=move || busy.get()>
                        "New conversation"
                    </button>
                    <Show
                        when=move || busy.get()
                        fallback=move || view! {
                            <button type="submit" class="button" disabled=move || input.get().trim().is_empty()>"Send"</button>
                        }
                    >
                        <button type="button" class="button danger" on:click=move |_| stop()>"Stop"</button>
                    </Show>
                </div>
            </form>
        </section>
    }
}
