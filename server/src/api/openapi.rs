//! The OpenAPI 3.1 document of the public chat API (`GET /v1/openapi.json`): the three routes
//! with the request fields Keyward itself reads, the answers it gives and every error status. The
//! full request shapes are the providers' own (OpenAI chat completions, Anthropic Messages);
//! fields Keyward does not read pass through to OpenAI-compatible providers, so the request
//! schemas allow more properties. A provider's failure is answered 502/503 (documented); Keyward
//! itself never answers 500 to a well- or badly-formed request.

use serde_json::{Value, json};

fn errors(shape: &str, codes: &[&str]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({"description": "An error, in the wire format's own shape",
                       "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{shape}")}}}}),
            )
        })
        .collect()
}

fn ok(schema: &str, streams: bool) -> Value {
    let mut content =
        json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    if streams {
        // Each event's data is a JSON chunk (OpenAI ends with the text `[DONE]`).
        content["text/event-stream"] = json!({"schema": {}});
    }
    json!({"description": "OK (server-sent events when the request asks to stream)", "content": content})
}

/// The status codes a chat answer may carry besides 200 (see `keyward::wire::FailureKind`).
const CHAT_ERRORS: &[&str] = &[
    "400", "401", "402", "403", "404", "413", "429", "502", "503",
];

pub fn document() -> Value {
    let mut completions = errors("OpenAiError", CHAT_ERRORS);
    completions.insert("200".into(), ok("ChatCompletion", true));
    let mut messages = errors("AnthropicError", CHAT_ERRORS);
    messages.insert("200".into(), ok("Message", true));
    let mut models = errors("OpenAiError", &["400", "401", "403", "429", "503"]);
    models.insert("200".into(), ok("ModelList", false));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Keyward public chat API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI- and Anthropic-compatible chat for a workspace's own apps. Authenticate with a workspace API token (kw_…) as a bearer token or in x-api-key. Model ids are provider/model; a bare id goes to the workspace's default provider.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "createChatCompletion",
                "summary": "A chat completion (OpenAI's wire format), streamed or not",
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
                "responses": completions,
            }},
            "/v1/messages": {"post": {
                "operationId": "createMessage",
                "summary": "A message (Anthropic's wire format), streamed or not",
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/MessageRequest"}}}},
                "responses": messages,
            }},
            "/v1/models": {"get": {
                "operationId": "listModels",
                "summary": "The models this workspace may use now",
                "responses": models,
            }},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A workspace API token (kw_…) with the chat or models scope"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": {
                "OpenAiError": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["message", "type"], "properties": {
                        "message": {"type": "string"}, "type": {"type": "string"},
                        "code": {"type": ["string", "null"]}, "param": {"type": ["string", "null"]}}}}},
                "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
                    "type": {"const": "error"},
                    "error": {"type": "object", "required": ["type", "message"], "properties": {
                        "type": {"type": "string"}, "message": {"type": "string"}}}}},
                "ChatMessage": {"type": "object", "required": ["role", "content"], "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant"]},
                    "content": {"type": "string"}}},
                "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": {
                    "model": {"type": "string", "description": "provider/model, or a bare model id"},
                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/ChatMessage"}},
                    "stream": {"type": "boolean"},
                    "max_tokens": {"type": "integer", "minimum": 1},
                    "temperature": {"type": "number"}}},
                "ChatCompletion": {"type": "object", "required": ["object", "choices"], "properties": {
                    "id": {"type": "string"},
                    "object": {"const": "chat.completion"},
                    "model": {"type": ["string", "null"]},
                    "choices": {"type": "array"},
                    "usage": {"type": "object"}}},
                "MessageRequest": {"type": "object", "required": ["model", "max_tokens", "messages"], "properties": {
                    "model": {"type": "string"},
                    "max_tokens": {"type": "integer", "minimum": 1},
                    "system": {"type": "string"},
                    "stream": {"type": "boolean"},
                    "messages": {"type": "array", "items": {"type": "object", "required": ["role", "content"], "properties": {
                        "role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}}}}}},
                "Message": {"type": "object", "required": ["type", "role", "content"], "properties": {
                    "id": {"type": "string"},
                    "type": {"const": "message"},
                    "role": {"const": "assistant"},
                    "content": {"type": "array"},
                    "usage": {"type": "object"}}},
                "ModelList": {"type": "object", "required": ["data"], "properties": {
                    "object": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
                        "id": {"type": "string"}}}}}},
            },
        },
    })
}
