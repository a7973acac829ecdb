//! Generated OpenAPI 3.1 documents of published services (issue 7): `ai` services describe
//! `POST /v1/chat/completions` limited to their models, `prompt` services one
//! `POST /prompts/{slug}/{name}` per prompt (request body = the variables' JSON Schema), `rest`
//! services without an uploaded document one operation per route and method.

use gatehouse_store::{Service, ServiceKind};
use gatehouse_types::apim::ServiceSpec;
use serde_json::{Map, Value, json};

fn error_responses() -> Value {
    json!({
        "401": {"description": "missing or invalid API key"},
        "403": {"description": "no active subscription (`subscription_required`) or scope missing"},
        "410": {"description": "the service is retired (`service_retired`)"},
    })
}

/// The document for `service` with the spec about to be published.
pub fn generate(service: &Service, spec: &ServiceSpec) -> Value {
    let mut paths = Map::new();
    match service.kind {
        ServiceKind::Ai => {
            let mut responses = error_responses();
            responses["200"] = json!({"description": "chat completion (OpenAI shape)"});
            paths.insert(
                "/v1/chat/completions".into(),
                json!({"post": {
                    "operationId": "createChatCompletion",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["model", "messages"],
                        "properties": {"model": {"type": "string", "enum": spec.models}, "messages": {"type": "array"}}
                    }}}},
                    "responses": responses,
                }}),
            );
        }
        ServiceKind::Prompt => {
            for p in &spec.prompts {
                let mut responses = error_responses();
                let answer = p.output_schema.clone().unwrap_or_else(|| json!({"type": "string"}));
                responses["200"] = json!({"description": "the model's answer", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"output": answer, "model": {"type": "string"}}
                }}}});
                paths.insert(
                    format!("/prompts/{}/{}", service.slug, p.name),
                    json!({"post": {
                        "operationId": format!("prompt_{}", p.name.replace('-', "_")),
                        "security": [{"bearer": []}],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {
                            "type": "object", "required": ["variables"], "properties": {"variables": p.variables}
                        }}}},
                        "responses": responses,
                    }}),
                );
            }
        }
        ServiceKind::Rest => {
            for r in &spec.routes {
                let path = format!("/svc/{}{}", service.slug, r.path.replace("{*", "{"));
                let item = paths.entry(path).or_insert_with(|| json!({}));
                let methods: Vec<String> = if r.methods.is_empty() { vec!["GET".into(), "POST".into()] } else { r.methods.clone() };
                for m in methods {
                    let mut responses = error_responses();
                    responses["default"] = json!({"description": "the upstream's answer"});
                    item[m.to_ascii_lowercase()] = json!({"security": [{"bearer": []}], "responses": responses});
                }
            }
        }
    }
    let mut info = json!({"title": service.name, "version": (service.version + 1).to_string()});
    if let Some(d) = &spec.description {
        info["description"] = json!(d);
    }
    json!({
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}
