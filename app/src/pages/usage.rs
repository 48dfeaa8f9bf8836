//! Usage: requests and tokens per day (stacked by provider, an SVG drawn here), breakdowns by
//! key, chatbot, model and key source, a date range, CSV export, and the credit balance with its
//! ledger. The platform admin's version covers every workspace.

use crate::api::get_usage;
use crate::auth::{RequireAuth, use_me_memo};
use keyward::chart;
use keyward::usage::{UsageReport, UsageRow, UsageTotals, format_credits};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn Usage() -> impl IntoView {
    view! {
        <Title text="Usage"/>
        <RequireAuth>
            <WorkspaceUsage/>
        </RequireAuth>
    }
}

#[component]
fn WorkspaceUsage() -> impl IntoView {
    let me = use_me_memo();
    let current = Memo::new(move |_| me.get().and_then(|m| m.current.map(|c| c.id)));
    move || match current.get() {
        Some(ws) => view! { <UsageView workspace_id=ws title="Usage"/> }.into_any(),
        None => view! { <h1>"Usage"</h1><p>"You are not in a workspace yet."</p> }.into_any(),
    }
}

#[component]
pub fn AdminUsage() -> impl IntoView {
    view! {
        <Title text="Usage across workspaces"/>
        <RequireAuth>
            <super::keys::AdminOnly title="Usage across workspaces">
                <super::admin::AdminNav/>
                <AdminUsageInner/>
            </super::keys::AdminOnly>
        </RequireAuth>
    }
}

/// Every workspace together, or one of them in full (its keys, chatbots, balance and ledger).
#[component]
fn AdminUsageInner() -> impl IntoView {
    let chosen = RwSignal::new(String::new());
    let workspaces = Resource::new(|| (), |_| crate::api::list_all_workspaces());
    view! {
        <label>"Show usage of "
            <select on:change=move |ev| chosen.set(event_target_value(&ev))>
                <option value="" selected=true>"All workspaces"</option>
                <Transition fallback=|| ()>
                    {move || workspaces.get().and_then(Result::ok).map(|rows| rows.into_iter().map(|w| view! {
                        <option value=w.id.clone()>{w.name.clone()}</option>
                    }).collect_view())}
                </Transition>
            </select>
        </label>
        {move || {
            let ws = chosen.get();
            let title = if ws.is_empty() { "Usage across workspaces" } else { "Usage of one workspace" };
            view! { <UsageView workspace_id=ws title=title/> }
        }}
    }
}

fn n(v: u64) -> String {
    // 1234567 → 1,234,567
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Requests,
    Tokens,
    /// Micro-credits at list price (with the budget line, when there is a budget).
    Cost,
}

#[component]
fn UsageView(workspace_id: String, title: &'static str) -> impl IntoView {
    let platform = workspace_id.is_empty();
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let applied = RwSignal::new((String::new(), String::new()));
    let ws = workspace_id.clone();
    let report = Resource::new(
        move || applied.get(),
        move |(f, t)| get_usage(ws.clone(), f, t),
    );
    view! {
        <h1>{title}</h1>
        <form class="filters" on:submit=move |ev| {
            ev.prevent_default();
            applied.set((from.get_untracked(), to.get_untracked()));
        }>
            <label>"From" <input type="date" name="from" prop:value=move || from.get()
                on:input=move |ev| from.set(event_target_value(&ev))/></label>
            <label>"To" <input type="date" name="to" prop:value=move || to.get()
                on:input=move |ev| to.set(event_target_value(&ev))/></label>
            <button class="button secondary" type="submit">"Show"</button>
        </form>
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || report.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(r) => view! { <Report report=r platform=platform/> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn Report(report: UsageReport, platform: bool) -> impl IntoView {
    let csv = format!(
        "/api/usage.csv?workspace={}&from={}&to={}",
        report.workspace_id, report.from, report.to
    );
    let t = report.totals.clone();
    let metric = RwSignal::new(Metric::Requests);
    let chart_report = report.clone();
    view! {
        <p class="muted">
            {format!("{} to {} (UTC). ", report.from, report.to)}
            <a href=csv download="">"Download CSV"</a>
        </p>
        <section class="stats" aria-label="Totals">
            <div class="stat"><span class="stat-value" data-testid="total-requests">{n(t.requests)}</span><span class="stat-label">"requests"</span></div>
            <div class="stat"><span class="stat-value" data-testid="total-input">{n(t.input_tokens)}</span><span class="stat-label">"input tokens"</span></div>
            <div class="stat"><span class="stat-value" data-testid="total-output">{n(t.output_tokens)}</span><span class="stat-label">"output tokens"</span></div>
            <div class="stat"><span class="stat-value" data-testid="total-credits">{format_credits(t.credits)}</span><span class="stat-label">"credits charged"</span></div>
            <div class="stat"><span class="stat-value">{format!("${}", format_credits(t.cost))}</span><span class="stat-label">"at list price"</span></div>
        </section>
        {(t.estimated > 0).then(|| view! {
            <p class="muted">{format!("{} request(s) had no usage from the provider; their tokens are estimated (about 4 characters per token).", n(t.estimated))}</p>
        })}
        <section class="card">
            <div class="chart-head">
                <h2>"Per day, by provider"</h2>
                <div role="group" aria-label="Chart shows" class="segmented">
                    <button type="button" class="button secondary" aria-pressed=move || (metric.get() == Metric::Requests).to_string()
                        on:click=move |_| metric.set(Metric::Requests)>"Requests"</button>
                    <button type="button" class="button secondary" aria-pressed=move || (metric.get() == Metric::Tokens).to_string()
                        on:click=move |_| metric.set(Metric::Tokens)>"Tokens"</button>
                    <button type="button" class="button secondary" aria-pressed=move || (metric.get() == Metric::Cost).to_string()
                        on:click=move |_| metric.set(Metric::Cost)>"Cost"</button>
                </div>
            </div>
            {move || view! { <Chart report=chart_report.clone() metric=metric.get()/> }}
        </section>
        {platform.then(|| view! { <Breakdown title="By workspace" first="Workspace" rows=report.by_workspace.clone()/> })}
        <Breakdown title="By key" first="Key" rows=report.by_key.clone()/>
        <Breakdown title="By chatbot" first="Chatbot" rows=report.by_chatbot.clone()/>
        <Breakdown title="By model" first="Model" rows=report.by_model.clone()/>
        <Breakdown title="By key source" first="Source" rows=report.by_source.clone()/>
        <Credits report=report/>
    }
}

#[component]
fn Chart(report: UsageReport, metric: Metric) -> impl IntoView {
    let values: Vec<Vec<u64>> = report
        .days
        .iter()
        .map(|d| match metric {
            Metric::Cost => d
                .cost_by_provider
                .iter()
                .map(|c| u64::try_from(*c).unwrap_or(0))
                .collect(),
            _ => d
                .by_provider
                .iter()
                .map(|(_, req, tok)| match metric {
                    Metric::Requests => *req,
                    _ => *tok,
                })
                .collect(),
        })
        .collect();
    let budget = report.budget.filter(|_| metric == Metric::Cost);
    let (c, line) = match budget {
        Some(b) => {
            let days: Vec<&str> = report.days.iter().map(|d| d.day.as_str()).collect();
            let micro = u64::try_from(b.micro).unwrap_or(0);
            let (c, line) = chart::with_budget(&values, &days, micro, b.window);
            (c, Some(line))
        }
        None => (chart::stacked(&values), None),
    };
    let what = match metric {
        Metric::Requests => "Requests",
        Metric::Tokens => "Tokens",
        Metric::Cost => "Cost (credits at list price)",
    };
    // Cost is in micro-credits: the axis and tips read credits.
    let n = move |v: u64| match metric {
        Metric::Cost => format_credits(i64::try_from(v).unwrap_or(i64::MAX)),
        _ => n(v),
    };
    let budget_text = budget.map(|b| {
        format!(
            "Budget: {} credits {}",
            format_credits(b.micro),
            match b.window {
                keyward::limits::Window::Day => "a day",
                keyward::limits::Window::Week => "a week",
                keyward::limits::Window::Month => "a month",
                keyward::limits::Window::Total => "in total",
            }
        )
    });
    let total: u64 = values.iter().flatten().sum();
    let busiest = values
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| v.iter().sum::<u64>())
        .filter(|(_, v)| v.iter().sum::<u64>() > 0)
        .map(|(i, v)| {
            format!(
                " The busiest day was {} with {}.",
                report.days[i].day,
                n(v.iter().sum())
            )
        })
        .unwrap_or_default();
    let budget_legend = budget_text.clone();
    let desc = format!(
        "{what} per day from {} to {}, stacked by provider: {} in total.{busiest}{}",
        report.from,
        report.to,
        n(total),
        budget_text
            .as_ref()
            .map(|t| format!(" {t}; the line shows what was spent in each budget window."))
            .unwrap_or_default()
    );
    let days = report.days.clone();
    let providers = report.providers.clone();
    let view_box = format!("0 0 {} {}", chart::WIDTH, chart::HEIGHT);
    view! {
        <figure class="chart">
            <svg viewBox=view_box role="img" aria-labelledby="usage-chart-title usage-chart-desc" data-testid="usage-chart">
                <title id="usage-chart-title">{format!("{what} per day by provider")}</title>
                <desc id="usage-chart-desc">{desc.clone()}</desc>
                {c.ticks.iter().map(|(y, v)| view! {
                    <line class="grid" x1=chart::LEFT x2=chart::WIDTH y1=*y y2=*y/>
                    <text class="axis" x=chart::LEFT - 6.0 y=*y + 4.0 text-anchor="end">{n(*v)}</text>
                }).collect_view()}
                {c.labels.iter().map(|(x, d)| view! {
                    <text class="axis" x=*x y=chart::HEIGHT - 8.0 text-anchor="middle">{days[*d].day[5..].to_string()}</text>
                }).collect_view()}
                {c.bars.iter().map(|b| {
                    let tip = format!("{}, {}: {} {}", days[b.day].day, providers[b.series], n(b.value), what.to_lowercase());
                    view! {
                        <rect class=format!("bar series-{}", b.series % 8) x=b.x y=b.y width=b.width height=b.height>
                            <title>{tip}</title>
                        </rect>
                    }
                }).collect_view()}
                {line.map(|l| {
                    let points = l.spent.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
                    view! {
                        <line class="budget-line" data-testid="budget-line" x1=chart::LEFT x2=chart::WIDTH y1=l.y y2=l.y>
                            <title>{budget_text.clone().unwrap_or_default()}</title>
                        </line>
                        <polyline class="budget-spent" points=points>
                            <title>"Spent in the budget's window"</title>
                        </polyline>
                    }
                })}
            </svg>
            <figcaption>
                <ul class="legend" aria-label="Providers">
                    {providers.iter().enumerate().map(|(i, p)| view! {
                        <li><span class=format!("swatch series-{}", i % 8) aria-hidden="true"></span>{p.clone()}</li>
                    }).collect_view()}
                    {budget_legend.clone().map(|t| view! {
                        <li><span class="swatch budget" aria-hidden="true"></span>{t}</li>
                    })}
                </ul>
                <details>
                    <summary>"Show as a table"</summary>
                    <table class="table">
                        <caption class="visually-hidden">{format!("{what} per day by provider")}</caption>
                        <thead><tr>
                            <th scope="col">"Day"</th>
                            {providers.iter().map(|p| view! { <th scope="col">{p.clone()}</th> }).collect_view()}
                        </tr></thead>
                        <tbody>
                            {values.iter().enumerate().filter(|(_, v)| v.iter().any(|x| *x > 0)).map(|(i, v)| view! {
                                <tr>
                                    <th scope="row">{days[i].day.clone()}</th>
                                    {v.iter().map(|x| view! { <td>{n(*x)}</td> }).collect_view()}
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </details>
            </figcaption>
        </figure>
    }
}

fn totals_cells(t: &UsageTotals) -> impl IntoView + use<> {
    view! {
        <td>{n(t.requests)}</td>
        <td>{n(t.input_tokens)}</td>
        <td>{n(t.output_tokens)}</td>
        <td>{format_credits(t.credits)}</td>
        <td>{format!("${}", format_credits(t.cost))}</td>
    }
}

#[component]
fn Breakdown(title: &'static str, first: &'static str, rows: Vec<UsageRow>) -> impl IntoView {
    let id = title.to_lowercase().replace(' ', "-");
    view! {
        <section class="card" aria-labelledby=id.clone()>
            <h2 id=id.clone()>{title}</h2>
            {if rows.is_empty() {
                view! { <p class="muted">"No requests in this range."</p> }.into_any()
            } else {
                view! {
                    <table class="table" aria-label=title>
                        <thead><tr>
                            <th scope="col">{first}</th>
                            <th scope="col">"Requests"</th>
                            <th scope="col">"Input tokens"</th>
                            <th scope="col">"Output tokens"</th>
                            <th scope="col">"Credits"</th>
                            <th scope="col">"List price"</th>
                        </tr></thead>
                        <tbody>
                            {rows.into_iter().map(|r| view! {
                                <tr>
                                    <th scope="row">
                                        <code>{r.label}</code>
                                        {r.detail.map(|d| view! { <span class="muted">{format!(" {d}")}</span> })}
                                    </th>
                                    {totals_cells(&r.totals)}
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn Credits(report: UsageReport) -> impl IntoView {
    let policy = report.byok_credit_policy;
    view! {
        <section class="card" aria-labelledby="credits-title">
            <h2 id="credits-title">"Credits"</h2>
            {report.balance.map(|b| view! {
                <p>
                    "Balance: " <strong data-testid="credit-balance">{format_credits(b)}</strong> " credits"
                    {report.monthly_allowance.map(|a| format!(" · monthly allowance {} credits", format_credits(a)))}
                </p>
                {(b <= 0).then(|| view! {
                    <p role="alert" class="error">"No credits left: requests on platform keys are refused until the platform admin adds credits. Your own keys keep working."</p>
                })}
            })}
            <p class="muted">
                "One credit is one US dollar at the platform's list prices. Platform-key requests always use credits; "
                {match policy {
                    keyward::usage::ByokCreditPolicy::Free => "requests on your own keys are free.",
                    keyward::usage::ByokCreditPolicy::TrackOnly => "requests on your own keys are deducted for tracking but never refused.",
                }}
            </p>
            {if report.ledger.is_empty() {
                view! { <p class="muted">"No credit movements yet."</p> }.into_any()
            } else {
                let show_ws = report.workspace_id.is_empty();
                view! {
                    <table class="table" aria-label="Credit ledger">
                        <thead><tr>
                            <th scope="col">"When"</th>
                            {show_ws.then(|| view! { <th scope="col">"Workspace"</th> })}
                            <th scope="col">"What"</th>
                            <th scope="col">"Amount"</th>
                            <th scope="col">"Balance"</th>
                            <th scope="col">"Note"</th>
                        </tr></thead>
                        <tbody>
                            {report.ledger.into_iter().map(|e| view! {
                                <tr>
                                    <td>{e.at}</td>
                                    {show_ws.then(|| view! { <td>{e.workspace.clone().unwrap_or_default()}</td> })}
                                    <td>{e.kind}</td>
                                    <td>{format_credits(e.amount)}</td>
                                    <td>{format_credits(e.balance_after)}</td>
                                    <td>{e.note}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}
