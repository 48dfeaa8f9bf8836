//! The dashboard's landing page: the instance status, read live from the database.

use crate::api::get_system_status;
use keyward::system::SystemStatus;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn Dashboard() -> impl IntoView {
    view! {
        <crate::auth::RequireAuth>
            <DashboardInner/>
        </crate::auth::RequireAuth>
    }
}

#[component]
fn DashboardInner() -> impl IntoView {
    // Bumped by "Check again"; the resource re-runs the server function on every change.
    let checks = RwSignal::new(0u32);
    let status = Resource::new(move || checks.get(), |_| get_system_status());

    view! {
        <Title text="Dashboard"/>
        <h1>"Dashboard"</h1>
        <section class="card" aria-labelledby="status-heading">
            <div class="card-head">
                <h2 id="status-heading">"System status"</h2>
                <button
                    type="button"
                    class="button"
                    on:click=move |_| checks.update(|n| *n += 1)
                >
                    "Check again"
                </button>
            </div>
            <Transition fallback=|| view! { <p aria-busy="true">"Checking…"</p> }>
                {move || {
                    status
                        .get()
                        .map(|result| match result {
                            Ok(s) => view! { <StatusList status=s/> }.into_any(),
                            Err(e) => {
                                view! { <p role="alert" class="error">{e.to_string()}</p> }
                                    .into_any()
                            }
                        })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn StatusList(status: SystemStatus) -> impl IntoView {
    view! {
        <dl class="facts" aria-live="polite">
            <dt>"Database"</dt>
            <dd data-testid="db-backend">{status.database.label()} " · reachable"</dd>
            <dt>"Query round trip"</dt>
            <dd>{format!("{:.2} ms", status.query_micros as f64 / 1000.0)}</dd>
            <dt>"Migrations applied"</dt>
            <dd>{status.migrations_applied}</dd>
            <dt>"Status checks served"</dt>
            <dd data-testid="status-checks">{status.status_checks}</dd>
            <dt>"Instance"</dt>
            <dd><code>{status.instance_id}</code></dd>
            <dt>"Version"</dt>
            <dd>{status.version}</dd>
        </dl>
    }
}
