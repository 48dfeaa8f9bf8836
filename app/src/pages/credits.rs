//! Platform admin: credits. The BYOK credit policy, each plan's monthly allowance, the price
//! table (US dollars per million tokens; credits are derived from it), and every workspace's
//! balance with a top-up form.

use super::auth_pages::{ActionError, error_of};
use crate::api::{
    DeletePrice, SetByokCreditPolicy, SetPlanAllowance, SetPrice, SetWorkspacePolicy, TopUpCredits,
    get_credit_settings,
};
use crate::auth::RequireAuth;
use keyward::usage::{ByokCreditPolicy, format_credits};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AdminCredits() -> impl IntoView {
    view! {
        <Title text="Credits and prices"/>
        <RequireAuth>
            <super::keys::AdminOnly title="Credits and prices">
                <Inner/>
            </super::keys::AdminOnly>
        </RequireAuth>
    }
}

#[component]
fn Inner() -> impl IntoView {
    let policy = ServerAction::<SetByokCreditPolicy>::new();
    let allowance = ServerAction::<SetPlanAllowance>::new();
    let price = ServerAction::<SetPrice>::new();
    let delete = ServerAction::<DeletePrice>::new();
    let top_up = ServerAction::<TopUpCredits>::new();
    let ws_policy = ServerAction::<SetWorkspacePolicy>::new();
    let settings = Resource::new(
        move || {
            (
                ws_policy.version().get(),
                policy.version().get(),
                allowance.version().get(),
                price.version().get(),
                delete.version().get(),
                top_up.version().get(),
            )
        },
        |_| get_credit_settings(),
    );
    view! {
        <super::admin::AdminNav/>
        <h1>"Credits and prices"</h1>
        <p class="muted">"One credit is one US dollar at these list prices. Platform-key requests always use credits; at zero balance they are refused."</p>
        <ActionError error=error_of(policy)/>
        <ActionError error=error_of(allowance)/>
        <ActionError error=error_of(price)/>
        <ActionError error=error_of(delete)/>
        <ActionError error=error_of(top_up)/>
        <ActionError error=error_of(ws_policy)/>
        {move || ws_policy.value().get().and_then(Result::ok).map(|()| view! {
            <p role="status" class="ok">"Workspace policy saved."</p>
        })}
        {move || top_up.value().get().and_then(Result::ok).map(|b| view! {
            <p role="status" class="ok">{format!("Credits added. New balance: {}", format_credits(b))}</p>
        })}
        <Transition fallback=|| view! { <p aria-busy="true">"Loading…"</p> }>
            {move || settings.get().map(|r| match r {
                Err(e) => view! { <p role="alert" class="error">{e.to_string()}</p> }.into_any(),
                Ok(s) => view! {
                    <section class="card">
                        <h2>"BYOK traffic"</h2>
                        <ActionForm action=policy attr:class="inline">
                            <label for="byok-credit-policy">"BYOK credit policy"</label>
                            <select name="policy" id="byok-credit-policy">
                                {ByokCreditPolicy::ALL.into_iter().map(|p| view! {
                                    <option value=p.as_str() selected=p == s.byok_credit_policy>{p.label()}</option>
                                }).collect_view()}
                            </select>
                            <button class="button secondary" type="submit">"Save policy"</button>
                        </ActionForm>
                    </section>
                    <section class="card">
                        <h2>"Workspaces users create"</h2>
                        <p class="muted">"Each workspace gets its plan's allowance every month: without a cap, one user could collect many."</p>
                        <ActionForm action=ws_policy attr:class="inline">
                            <label for="workspaces-per-user">"Workspaces a user may own"</label>
                            <input id="workspaces-per-user" name="workspaces_per_user" inputmode="numeric" value=s.workspaces_per_user.to_string() required/>
                            <input id="self-service-allowance" type="checkbox" name="self_service_allowance" value="on" checked=s.self_service_allowance/>
                            <label for="self-service-allowance">"New self-service workspaces get their plan's allowance"</label>
                            <button class="button secondary" type="submit">"Save workspace policy"</button>
                        </ActionForm>
                    </section>
                    <section class="card">
                        <h2>"Monthly allowance per plan"</h2>
                        <p class="muted">"Granted on each workspace's first request (or usage view) of a month; unused credits carry over."</p>
                        {s.allowances.into_iter().map(|(plan, v)| {
                            let id = format!("allowance-{}", plan.as_str());
                            view! {
                                <ActionForm action=allowance attr:class="inline">
                                    <input type="hidden" name="plan" value=plan.as_str()/>
                                    <label for=id.clone()>{format!("{} plan (credits a month)", plan.as_str())}</label>
                                    <input id=id name="credits" inputmode="decimal" value=format_credits(v) required/>
                                    <button class="button secondary" type="submit">{format!("Save {} allowance", plan.as_str())}</button>
                                </ActionForm>
                            }
                        }).collect_view()}
                    </section>
                    <section class="card">
                        <h2>"Price table"</h2>
                        <p class="muted">"US dollars per million tokens. A model without a row uses its provider's * row, then */*."</p>
                        <table class="table" aria-label="Prices">
                            <thead><tr>
                                <th scope="col">"Provider"</th>
                                <th scope="col">"Model"</th>
                                <th scope="col">"Input $/M"</th>
                                <th scope="col">"Output $/M"</th>
                                <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            </tr></thead>
                            <tbody>
                                {s.prices.into_iter().map(|p| {
                                    let what = format!("{}/{}", p.provider, p.model);
                                    view! {
                                        <tr>
                                            <td>{p.provider.clone()}</td>
                                            <td><code>{p.model.clone()}</code></td>
                                            <td>{format_credits(p.price.input)}</td>
                                            <td>{format_credits(p.price.output)}</td>
                                            <td>
                                                {(p.provider != "*").then(|| view! {
                                                    <ActionForm action=delete attr:class="inline">
                                                        <input type="hidden" name="provider" value=p.provider.clone()/>
                                                        <input type="hidden" name="model" value=p.model.clone()/>
                                                        <button class="button danger" type="submit">{format!("Delete price {what}")}</button>
                                                    </ActionForm>
                                                })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        <h3>"Add or change a price"</h3>
                        <ActionForm action=price attr:class="inline">
                            <label>"Provider"
                                <select name="price[provider]">
                                    {keyward::catalogue::PROVIDERS.iter().map(|p| view! { <option value=p.id>{p.id}</option> }).collect_view()}
                                    <option value="*">"* (every provider)"</option>
                                </select>
                            </label>
                            <label>"Model" <input name="price[model]" placeholder="gpt-4o-mini or *" required/></label>
                            <label>"Input $/M" <input name="price[input]" inputmode="decimal" required/></label>
                            <label>"Output $/M" <input name="price[output]" inputmode="decimal" required/></label>
                            <button class="button" type="submit">"Save price"</button>
                        </ActionForm>
                    </section>
                    <section class="card">
                        <h2>"Balances"</h2>
                        <table class="table" aria-label="Balances">
                            <thead><tr>
                                <th scope="col">"Workspace"</th>
                                <th scope="col">"Plan"</th>
                                <th scope="col">"Balance"</th>
                                <th scope="col">"Add credits"</th>
                            </tr></thead>
                            <tbody>
                                {s.workspaces.into_iter().map(|w| {
                                    let amount = format!("amount-{}", w.id);
                                    view! {
                                        <tr>
                                            <td>{w.name.clone()}</td>
                                            <td>{w.plan.as_str()}</td>
                                            <td>{format_credits(w.balance)}</td>
                                            <td>
                                                <ActionForm action=top_up attr:class="inline">
                                                    <input type="hidden" name="workspace_id" value=w.id.clone()/>
                                                    <label class="visually-hidden" for=amount.clone()>{format!("Credits for {}", w.name)}</label>
                                                    <input id=amount name="credits" inputmode="decimal" placeholder="10" required/>
                                                    <input name="note" placeholder="Note (optional)" aria-label=format!("Note for {}", w.name)/>
                                                    <button class="button secondary" type="submit">{format!("Add credits to {}", w.name)}</button>
                                                </ActionForm>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </section>
                }.into_any(),
            })}
        </Transition>
    }
}
