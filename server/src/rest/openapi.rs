//! The OpenAPI 3.1 document of the management API, generated from the same table as the routes.
//! The schemas are written here by hand: the types they describe live in the core crate, which
//! is also compiled to wasm and stays free of server-only derive machinery.

use super::Endpoint;
use serde_json::{Map, Value, json};

fn schemas() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}}}
        },
        "Key": {
            "type": "object",
            "required": ["id", "provider", "hint", "state", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "provider": {"type": "string"},
                "hint": {"type": "string", "description": "The masked key, e.g. sk-…abcd"},
                "state": {"type": "string", "enum": ["active", "disabled", "inactive_byok"]},
                "default_model": nullable_string,
                "base_url": nullable_string,
                "created_by": nullable_string,
                "created_at": {"type": "string"},
                "updated_at": {"type": "string"},
                "last_used_at": nullable_string,
                "last_tested_at": nullable_string,
                "last_error": {"type": ["object", "null"]},
            }
        },
        "KeyList": {"type": "object", "required": ["keys"], "properties": {
            "keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
        "NewKey": {
            "type": "object", "required": ["provider", "key"],
            "properties": {
                "provider": {"type": "string", "description": "A provider id: openai, anthropic, groq, …"},
                "key": {"type": "string", "writeOnly": true},
                "default_model": {"type": "string"},
                "base_url": {"type": "string"},
            }
        },
        "Chatbot": {
            "type": "object",
            "required": ["id", "name", "slug", "provider", "public"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "slug": {"type": "string"},
                "provider": {"type": "string"},
                "model": nullable_string,
                "public": {"type": "boolean"},
                "system_prompt": {"type": "string"},
                "greeting": {"type": "string"},
                "temperature": {"type": "number"},
                "max_tokens": {"type": "integer"},
                "allowed_models": {"type": "array", "items": {"type": "string"}},
                "daily_cap": {"type": "integer"},
            }
        },
        "ChatbotList": {"type": "object", "required": ["chatbots"], "properties": {
            "chatbots": {"type": "array", "items": {"$ref": "#/components/schemas/Chatbot"}}}},
        "NewChatbot": {
            "type": "object", "required": ["name", "provider"],
            "properties": {
                "name": {"type": "string"}, "provider": {"type": "string"},
                "model": {"type": "string"}, "system_prompt": {"type": "string"},
                "greeting": {"type": "string"}, "public": {"type": "boolean"},
            }
        },
        "Scope": {"type": "string", "enum": ["chat", "models", "management"]},
        "Token": {
            "type": "object",
            "required": ["id", "name", "shown", "scopes", "created_at", "revoked", "expired"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "shown": {"type": "string", "description": "The token's first characters, e.g. kw_abc123…"},
                "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}},
                "chatbot_id": nullable_string,
                "expires_at": nullable_string,
                "last_used_at": nullable_string,
                "created_at": {"type": "string"},
                "created_by": nullable_string,
                "revoked": {"type": "boolean"},
                "expired": {"type": "boolean"},
            }
        },
        "TokenList": {"type": "object", "required": ["tokens"], "properties": {
            "tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}}},
        "NewToken": {
            "type": "object", "required": ["name", "scopes"],
            "properties": {
                "name": {"type": "string", "maxLength": 80},
                "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}, "minItems": 1},
                "chatbot_id": {"type": "string", "description": "Bind the token to a chatbot (its keys first); empty for none"},
                "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 3650},
            }
        },
        "CreatedToken": {
            "type": "object", "required": ["token", "view"],
            "properties": {
                "token": {"type": "string", "description": "kw_ + 43 characters; shown only here"},
                "view": {"$ref": "#/components/schemas/Token"},
            }
        },
        "Limits": {
            "type": "object",
            "additionalProperties": false,
            "description": "A scope's limits; every field optional (absent or null: no such limit). A budget counts the list-price cost of every request, reserving each request's worst case (input + max_tokens, or the model's most output, × n) until it settles.",
            "properties": {
                "budget_micro": {"type": ["integer", "null"], "minimum": 0, "description": "Spend budget in micro-credits (1 credit = 1,000,000)"},
                "window": {"type": ["string", "null"], "enum": ["day", "week", "month", "total", null], "description": "The budget's window, UTC (weeks start on Monday); default month"},
                "alert_percent": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "description": "Soft alert (audit log, dashboard) at this share of the budget; default 80, 0 for none"},
                "requests_per_minute": {"type": ["integer", "null"], "minimum": 0},
                "input_tokens_per_minute": {"type": ["integer", "null"], "minimum": 0},
                "output_tokens_per_minute": {"type": ["integer", "null"], "minimum": 0},
                "concurrent": {"type": ["integer", "null"], "minimum": 0, "description": "Requests at once"},
                "on_store_error": {"type": ["string", "null"], "enum": ["closed", "open", null], "description": "When the counters' store cannot answer: refuse (closed, the default) or let requests through (open)"},
            }
        },
        "LimitsPage": {
            "type": "object",
            "required": ["workspace_id", "scopes", "refusals"],
            "properties": {
                "workspace_id": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "object", "required": ["kind", "subject", "name", "editable"], "properties": {
                    "kind": {"type": "string", "enum": ["plan", "override", "workspace", "chatbot", "token", "key"]},
                    "subject": {"type": "string"},
                    "name": {"type": "string"},
                    "limits": {"type": ["object", "null"]},
                    "consumption": {"type": ["object", "null"]},
                    "editable": {"type": "boolean"},
                }}},
                "refusals": {"type": "array", "items": {"type": "object", "required": ["class", "label", "count", "last_at"], "properties": {
                    "class": {"type": "string"}, "label": {"type": "string"},
                    "count": {"type": "integer"}, "last_at": {"type": "string"}}}},
            }
        },
        "UsageReport": {
            "type": "object",
            "required": ["workspace_id", "from", "to", "totals", "days"],
            "properties": {
                "workspace_id": {"type": "string"},
                "workspace_name": {"type": "string"},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "totals": {"type": "object"},
                "providers": {"type": "array", "items": {"type": "string"}},
                "days": {"type": "array", "items": {"type": "object"}},
                "by_key": {"type": "array", "items": {"type": "object"}},
                "by_chatbot": {"type": "array", "items": {"type": "object"}},
                "by_model": {"type": "array", "items": {"type": "object"}},
                "by_source": {"type": "array", "items": {"type": "object"}},
                "balance": {"type": ["integer", "null"], "description": "Micro-credits (1 credit = US$1 at list price)"},
            }
        },
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn operation(e: &Endpoint) -> Value {
    let mut params = vec![json!({
        "name": "workspace", "in": "path", "required": true,
        "schema": {"type": "string", "format": "uuid"},
    })];
    if e.path.ends_with("{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true,
                           "schema": {"type": "string", "format": "uuid"}}));
    }
    if e.path.ends_with("{scope}/{subject}") {
        params.push(json!({"name": "scope", "in": "path", "required": true,
                           "description": "Which scope: the workspace itself, one of its chatbots, API tokens or keys",
                           "schema": {"type": "string", "enum": ["workspace", "chatbot", "token", "key"]}}));
        params.push(json!({"name": "subject", "in": "path", "required": true,
                           "description": "The id of the workspace, chatbot, token or key",
                           "schema": {"type": "string", "format": "uuid"}}));
    }
    for q in e.query {
        params.push(json!({"name": q, "in": "query", "required": false,
                           "schema": {"type": "string", "format": "date"}}));
    }
    let mut responses = Map::new();
    let (status, schema) = e.response;
    responses.insert(
        status.to_string(),
        match schema {
            Some(s) => json!({"description": "OK", "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{s}")}}}}),
            None => json!({"description": "Done"}),
        },
    );
    for (code, what) in [
        ("400", "The request is invalid; the message says why"),
        ("401", "No valid token or session"),
        ("403", "Not allowed (scope, role, or a failed CSRF check)"),
        ("404", "No such resource in the caller's workspace"),
        (
            "409",
            "The request conflicts with the current state; the message says why",
        ),
        ("429", "Too many attempts; retry later"),
    ] {
        responses.insert(code.into(), error_response(what));
    }
    if e.request.is_some() {
        responses.insert(
            "422".into(),
            error_response(
                "The body has a field this operation does not take; the message names it",
            ),
        );
    }
    let mut op = json!({
        "operationId": e.id,
        "summary": e.summary,
        "tags": [e.tag],
        "parameters": params,
        "responses": responses,
    });
    if let Some(r) = e.request {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{r}")}}}});
    }
    op
}

pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for e in endpoints {
        let item = paths
            .entry(e.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        item[e.method] = operation(e);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Keyward management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Keys (masked), chatbots, API tokens and usage of a workspace. Authenticate with a workspace API token that has the `management` scope (it acts with an admin's rights: it never adds or removes provider keys), or with a dashboard session plus the `x-keyward-csrf` header on changes. The OpenAI- and Anthropic-compatible chat API is at /v1 and follows those providers' own specifications.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A workspace API token (kw_…) with the management scope"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "session": {"type": "apiKey", "in": "cookie", "name": keyward::http::SESSION_COOKIE},
            },
        },
    })
}
