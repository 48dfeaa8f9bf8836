//! Pages whose features land in later milestones. Routing and layout are real; each page says
//! what it will hold so nobody mistakes it for a broken feature.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
fn Upcoming(title: &'static str, summary: &'static str) -> impl IntoView {
    view! {
        <Title text=title/>
        <crate::auth::RequireAuth>
            <h1>{title}</h1>
            <section class="card">
                <p>{summary}</p>
                <p class="muted">"Coming next."</p>
            </section>
        </crate::auth::RequireAuth>
    }
}

#[component]
pub fn Usage() -> impl IntoView {
    view! {
        <Upcoming
            title="Usage"
            summary="Requests and tokens per day, by key, chatbot, model and key source, with credits."
        />
    }
}
