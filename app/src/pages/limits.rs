//! `/limits`: spend control of the workspace. Every scope its requests pass through — the
//! operator's limits (its plan's default or an override), the workspace, each chatbot, each API
//! token, each key — with live consumption bars (refreshed every few seconds), the owner's forms
//! (admins: tokens), and the last week's refusals by limit. `/admin/limits`: the operator's
//! plans' defaults, platform keys' limits and per-workspace overrides.

use super::auth_pages::{ActionError, error_of};
use crate::api::{
    SetLimits, SetOperatorLimits, get_limits, get_operator_limits, list_all_workspaces,
};
use crate::auth::{RequireAuth, use_me_memo};
use keyward::limits::{Consumption, Limits, LimitsInput, ScopeLimitsView, Window};
use keyward::usage::format_credits;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

/// How often the bars refresh (in the browser).
#[cfg(feature = "hydrate")]
const REFRESH_MS: u64 = 5_000;

#[component]
pub fn LimitsPage() -> impl IntoView {
    view! {
        <Title text="Limits"/>
        <RequireAuth>
            <WorkspaceLimits/>
        </RequireAuth>
    }
}

#[component]
fn WorkspaceLimits() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <Panel ws/> }.into_any(),
        None => view! { <h1>"Limits"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

/// Bumps `tick` every [`REFRESH_MS`] while the page is open (in the browser).
fn refresh(tick: RwSignal<u32>) {
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || tick.update(|n| *n = n.wrapping_add(1)),
            std::time::Duration::from_millis(REFRESH_MS),
        );
        if let Ok(h) = handle {
            on_cleanup(move || h.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = tick;
}

#[component]
fn Panel(ws: String) -> impl IntoView {
    let save = ServerAction::<SetLimits>::new();
    let tick = RwSignal::new(0u32);
    refresh(tick);
    let page = Resource::new(move || (save.version().get(), tick.get()), {
        let ws = ws.clone();
        move |_| get_limits(ws.clone())
    });
    view! {
        <h1>"Limits"</h1>
        <p class="muted">
            "A request must fit every scope it passes through: the plan, the workspace, its chatbot or API token, and the key that serves it. "
            "Budgets count the list-price cost of every request (your own keys included) and reserve each request's worst case until it ends — "
            "its input plus max_tokens (or the model's most output) for each choice — so with max_tokens set a budget is never exceeded."
        </p>
        <ActionError error=error_of(save)/>
        {move || save.value().get().and_then(Result::ok).map(|()| view! {
            <p role="status" class="ok">"Limits saved."</p>
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(p) => {
                    let ws = p.workspace_id.clone();
                    view! {
                        <section class="card" aria-labelledby="refusals-heading">
                            <h2 id="refusals-heading">"Refused in the last 7 days"</h2>
                            {if p.refusals.is_empty() {
                                view! { <p class="muted">"No request was refused by a limit."</p> }.into_any()
                            } else {
                                view! {
                                    <table class="table" aria-label="Refusals">
                                        <thead><tr>
                                            <th scope="col">"Limit"</th>
                                            <th scope="col">"Requests refused"</th>
                                            <th scope="col">"Last"</th>
                                        </tr></thead>
                                        <tbody>
                                            {p.refusals.into_iter().map(|r| view! {
                                                <tr>
                                                    <td>{r.label}</td>
                                                    <td>{r.count}</td>
                                                    <td>{r.last_at}</td>
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                        </section>
                        {p.scopes.into_iter().map(|s| {
                            let form = s.editable.then(|| {
                                let (kind, subject, input) = (s.kind, s.subject.clone(), s.limits.as_ref().map(LimitsInput::of).unwrap_or_default());
                                let ws = ws.clone();
                                view! {
                                    <ActionForm action=save attr:class="limits-form">
                                        <input type="hidden" name="workspace_id" value=ws/>
                                        <input type="hidden" name="scope" value=kind.as_str()/>
                                        <input type="hidden" name="subject" value=subject.clone()/>
                                        <Fields id=subject input/>
                                    </ActionForm>
                                }
                            });
                            view! { <ScopeCard scope=s.clone()>{form}</ScopeCard> }
                        }).collect_view()}
                    }.into_any()
                }
            })}
        </Transition>
    }
}

/// One scope: its name, what it allows, bars of what it uses, and (given) its form.
#[component]
fn ScopeCard(scope: ScopeLimitsView, children: Children) -> impl IntoView {
    let alerting = scope.alerting();
    let heading = format!("limits-{}-{}", scope.kind.as_str(), scope.subject);
    let labelled_by = heading.clone();
    let summary = scope.limits.map_or_else(
        || "No limits.".to_string(),
        |l| format!("Limits: {}.", l.describe()),
    );
    view! {
        <section class="card limits" class:alerting=alerting aria-labelledby=labelled_by>
            <h2 id=heading>{scope.name.clone()}</h2>
            <p class="muted">{summary}</p>
            {alerting.then(|| view! {
                <p role="status" class="warning">"This budget has passed its alert share."</p>
            })}
            {match (scope.limits, scope.consumption) {
                (Some(l), Some(c)) => bars(&scope.name, &l, &c).into_any(),
                _ => ().into_any(),
            }}
            {children()}
        </section>
    }
}

fn window_word(w: Window) -> &'static str {
    match w {
        Window::Day => "today (UTC)",
        Window::Week => "this week (UTC, from Monday)",
        Window::Month => "this month (UTC)",
        Window::Total => "in total",
    }
}

/// A labelled bar: `what`, `used` of `of`.
fn bar(name: &str, what: &str, used: u64, of: u64, text: String) -> impl IntoView {
    let label = format!("{name}: {what}");
    view! {
        <div class="bar">
            <span class="bar-label">{what.to_string()}</span>
            <progress aria-label=label max=of.max(1) value=used.min(of.max(1))></progress>
            <span class="bar-text">{text}</span>
        </div>
    }
}

fn bars(name: &str, l: &Limits, c: &Consumption) -> impl IntoView + use<> {
    let mut out = Vec::new();
    if let Some(b) = l.budget {
        let used = u64::try_from(c.spent.max(0)).unwrap_or(0);
        let budget = u64::try_from(b.micro.max(0)).unwrap_or(0);
        let mut text = format!(
            "{} of {} credits spent {}",
            format_credits(c.spent),
            format_credits(b.micro),
            window_word(b.window)
        );
        if c.reserved > 0 {
            text.push_str(&format!(
                " (+{} reserved in flight)",
                format_credits(c.reserved)
            ));
        }
        out.push(bar(name, "Budget", used, budget, text).into_any());
    }
    let per_minute = format!("this minute (resets in {} s)", c.minute_resets_in);
    if let Some(n) = l.requests_per_minute {
        let text = format!("{} of {n} requests {per_minute}", c.requests);
        out.push(
            bar(
                name,
                "Requests a minute",
                u64::from(c.requests),
                u64::from(n),
                text,
            )
            .into_any(),
        );
    }
    if let Some(n) = l.input_tokens_per_minute {
        let text = format!("{} of {n} input tokens {per_minute}", c.input_tokens);
        out.push(bar(name, "Input tokens a minute", c.input_tokens, n, text).into_any());
    }
    if let Some(n) = l.output_tokens_per_minute {
        let text = format!("{} of {n} output tokens {per_minute}", c.output_tokens);
        out.push(bar(name, "Output tokens a minute", c.output_tokens, n, text).into_any());
    }
    if let Some(n) = l.concurrent {
        let text = format!("{} of {n} requests running", c.in_flight);
        out.push(bar(name, "At once", u64::from(c.in_flight), u64::from(n), text).into_any());
    }
    out.collect_view()
}

/// The limits form's fields (`limits[…]`), filled with `input`; `id` keeps labels unique.
#[component]
fn Fields(id: String, input: LimitsInput) -> impl IntoView {
    let f = move |name: &str| format!("{name}-{id}");
    let (budget, window, alert, rpm, itpm, otpm, conc, store) = (
        f("budget"),
        f("window"),
        f("alert"),
        f("rpm"),
        f("itpm"),
        f("otpm"),
        f("concurrent"),
        f("store"),
    );
    view! {
        <div class="limits-fields">
            <div class="field">
                <label for=budget.clone()>"Budget (credits)"</label>
                <input id=budget name="limits[budget]" inputmode="decimal" value=input.budget placeholder="none"/>
            </div>
            <div class="field">
                <label for=window.clone()>"Window"</label>
                <select id=window name="limits[window]">
                    {Window::ALL.into_iter().map(|w| view! {
                        <option value=w.as_str() selected=w.as_str() == input.window>{w.as_str()}</option>
                    }).collect_view()}
                </select>
            </div>
            <div class="field">
                <label for=alert.clone()>"Alert at (%)"</label>
                <input id=alert name="limits[alert_percent]" inputmode="numeric" value=input.alert_percent/>
            </div>
            <div class="field">
                <label for=rpm.clone()>"Requests a minute"</label>
                <input id=rpm name="limits[requests_per_minute]" inputmode="numeric" value=input.requests_per_minute placeholder="none"/>
            </div>
            <div class="field">
                <label for=itpm.clone()>"Input tokens a minute"</label>
                <input id=itpm name="limits[input_tokens_per_minute]" inputmode="numeric" value=input.input_tokens_per_minute placeholder="none"/>
            </div>
            <div class="field">
                <label for=otpm.clone()>"Output tokens a minute"</label>
                <input id=otpm name="limits[output_tokens_per_minute]" inputmode="numeric" value=input.output_tokens_per_minute placeholder="none"/>
            </div>
            <div class="field">
                <label for=conc.clone()>"Requests at once"</label>
                <input id=conc name="limits[concurrent]" inputmode="numeric" value=input.concurrent placeholder="none"/>
            </div>
            <div class="field">
                <label for=store.clone()>"If the limit store is down"</label>
                <select id=store name="limits[on_store_error]">
                    <option value="closed" selected=input.on_store_error != "open">"refuse (closed)"</option>
                    <option value="open" selected=input.on_store_error == "open">"let requests through (open)"</option>
                </select>
            </div>
        </div>
        <button class="button" type="submit">"Save limits"</button>
    }
}

#[component]
pub fn AdminLimits() -> impl IntoView {
    view! {
        <Title text="Limits"/>
        <RequireAuth>
            <super::keys::AdminOnly title="Limits">
                <AdminInner/>
            </super::keys::AdminOnly>
        </RequireAuth>
    }
}

#[component]
fn AdminInner() -> impl IntoView {
    let save = ServerAction::<SetOperatorLimits>::new();
    let rows = Resource::new(move || save.version().get(), |_| get_operator_limits());
    let workspaces = Resource::new(|| (), |_| list_all_workspaces());
    view! {
        <super::admin::AdminNav/>
        <h1>"Limits"</h1>
        <p class="muted">"Each plan's default limits apply to every workspace on it, unless the workspace has an override (which replaces them). A platform key's limits count across every workspace it serves."</p>
        <ActionError error=error_of(save)/>
        {move || save.value().get().and_then(Result::ok).map(|()| view! {
            <p role="status" class="ok">"Limits saved."</p>
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || rows.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(rows) => rows.into_iter().map(|s| {
                    let input = s.limits.as_ref().map(LimitsInput::of).unwrap_or_default();
                    let (kind, subject) = (s.kind, s.subject.clone());
                    view! {
                        <ScopeCard scope=s.clone()>
                            <ActionForm action=save attr:class="limits-form">
                                <input type="hidden" name="scope" value=kind.as_str()/>
                                <input type="hidden" name="subject" value=subject.clone()/>
                                <Fields id=subject input/>
                            </ActionForm>
                        </ScopeCard>
                    }
                }).collect_view().into_any(),
            })}
        </Transition>
        <section class="card" aria-labelledby="override-heading">
            <h2 id="override-heading">"Override a workspace"</h2>
            <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
                {move || workspaces.get().map(|r| match r {
                    Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                    Ok(list) => view! {
                        <ActionForm action=save attr:class="limits-form">
                            <input type="hidden" name="scope" value="override"/>
                            <label for="override-workspace">"Workspace"</label>
                            <select id="override-workspace" name="subject">
                                {list.into_iter().map(|w| view! { <option value=w.id.clone()>{w.name.clone()}</option> }).collect_view()}
                            </select>
                            <Fields id="override".to_string() input=LimitsInput::default()/>
                        </ActionForm>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}
