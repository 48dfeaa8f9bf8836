//! Platform admin: the provider catalogue as this instance uses it — base URL and default model
//! overrides, the BYOK switch per provider, and which plans may bring their own keys.

use crate::api::{
    SetByokPlans, UpdateProvider, get_platform_providers, set_byok_plans, update_provider,
};
use crate::auth::RequireAuth;
use keyward::dto::{PlatformProviders, ProviderInfo};
use keyward::policy::Plan;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos::web_sys;
use leptos_meta::Title;

#[component]
pub fn AdminProviders() -> impl IntoView {
    view! {
        <Title text="Providers"/>
        <RequireAuth>
            <super::keys::AdminOnly title="Providers">
                <Inner/>
            </super::keys::AdminOnly>
        </RequireAuth>
    }
}

#[component]
fn Inner() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let message = RwSignal::new(None::<Result<String, String>>);
    let data = Resource::new(move || reload.get(), |_| get_platform_providers());
    view! {
        <super::admin::AdminNav/>
        <h1>"Providers"</h1>
        <p class="muted">"Catalogue defaults, your overrides, and where workspaces may bring their own keys (BYOK). When BYOK is off for a provider, every workspace uses the platform key for it; their own keys are kept and shown inactive."</p>
        {move || message.get().map(|m| match m {
            Ok(m) => view! { <p role="status" class="ok">{m}</p> }.into_any(),
            Err(m) => view! { <p role="alert" class="error">{m}</p> }.into_any(),
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || data.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(PlatformProviders { providers, byok_plans }) => view! {
                    <PlansForm plans=byok_plans reload message/>
                    <ul class="key-list" aria-label="Providers">
                        {providers.into_iter().map(|p| view! { <ProviderForm p reload message/> }).collect_view()}
                    </ul>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn PlansForm(
    plans: Vec<Plan>,
    reload: RwSignal<u32>,
    message: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let chosen = RwSignal::new(plans);
    let on_submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let text = keyward::keys::plans_to_text(&chosen.get_untracked());
        spawn_local(async move {
            let r = set_byok_plans(text).await;
            message.set(Some(
                r.map(|()| "BYOK plans saved.".into())
                    .map_err(|e| e.to_string()),
            ));
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="card" aria-labelledby="plans-heading">
            <h2 id="plans-heading">"Plans that may bring their own keys"</h2>
            <form method="post" action=SetByokPlans::url() on:submit=on_submit class="inline">
                {Plan::ALL.into_iter().map(|plan| view! {
                    <label class="check">
                        <input type="checkbox"
                            prop:checked=move || chosen.get().contains(&plan)
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                chosen.update(|c| { c.retain(|p| *p != plan); if on { c.push(plan); } });
                            }/>
                        {format!("BYOK for {}", plan.as_str())}
                    </label>
                }).collect_view()}
                <button class="button secondary" type="submit">"Save plans"</button>
            </form>
        </section>
    }
}

#[component]
fn ProviderForm(
    p: ProviderInfo,
    reload: RwSignal<u32>,
    message: RwSignal<Option<Result<String, String>>>,
) -> impl IntoView {
    let custom = p.base_url.is_none() && p.id == keyward::catalogue::CUSTOM;
    let byok = RwSignal::new(p.byok_enabled);
    let base_url = RwSignal::new(if p.overridden {
        p.base_url.clone().unwrap_or_default()
    } else {
        String::new()
    });
    let model = RwSignal::new(if p.overridden {
        p.default_model.clone().unwrap_or_default()
    } else {
        String::new()
    });
    let defaults = keyward::catalogue::provider(&p.id);
    let url_placeholder = defaults
        .and_then(|d| d.default_base_url)
        .unwrap_or("")
        .to_string();
    let model_placeholder = defaults
        .and_then(|d| d.default_model)
        .unwrap_or("")
        .to_string();
    let id = p.id.clone();
    let name = p.name.clone();
    let on_submit = {
        let (id, name) = (id.clone(), name.clone());
        move |ev: web_sys::SubmitEvent| {
            ev.prevent_default();
            let (id, name) = (id.clone(), name.clone());
            let (u, m, b) = (
                base_url.get_untracked(),
                model.get_untracked(),
                byok.get_untracked(),
            );
            spawn_local(async move {
                let r = update_provider(id, u, m, b).await;
                message.set(Some(
                    r.map(|()| format!("{name} saved."))
                        .map_err(|e| e.to_string()),
                ));
                reload.update(|n| *n += 1);
            });
        }
    };
    let heading = format!("prov-{id}");
    let labelled_by = heading.clone();
    view! {
        <li class="card" aria-labelledby=labelled_by>
            <div class="card-head">
                <h2 id=heading>{name.clone()}</h2>
                <span class=if p.byok_enabled { "badge ok" } else { "badge warn" }>
                    {if p.byok_enabled { "BYOK on" } else { "BYOK off" }}
                </span>
            </div>
            <form method="post" action=UpdateProvider::url() class="stack narrow" on:submit=on_submit>
                <label class="check">
                    <input type="checkbox" prop:checked=move || byok.get()
                        on:change=move |ev| byok.set(event_target_checked(&ev))/>
                    {format!("Allow workspaces to use their own {name} keys")}
                </label>
                {(!custom).then(|| view! {
                    <label>
                        {format!("{name} base URL")}
                        <input type="url" placeholder=url_placeholder.clone()
                            prop:value=move || base_url.get()
                            on:input=move |ev| base_url.set(event_target_value(&ev))/>
                    </label>
                })}
                <label>
                    {format!("{name} default model")}
                    <input type="text" placeholder=model_placeholder.clone()
                        prop:value=move || model.get()
                        on:input=move |ev| model.set(event_target_value(&ev))/>
                </label>
                <button class="button secondary" type="submit">{format!("Save {name}")}</button>
            </form>
        </li>
    }
}
