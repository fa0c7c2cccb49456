//! OpenAPI entries of the management routes (sessions filters, residents, unknown tags),
//! merged into [`crate::api::openapi_document`].

use serde_json::{Value, json};

/// Adds the management paths and the sessions filters to `doc`.
pub fn extend(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let ok = |d: &str, schema: Value| json!({ "description": d, "content": { "application/json": { "schema": schema } } });
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let tag = json!({ "name": "tag", "in": "path", "required": true, "schema": { "type": "string" },
        "description": "The tag, percent-encoded (compared case-insensitively)" });
    let tag_grant = json!({ "type": "object", "required": ["tag"], "properties": {
        "tag": { "type": "string", "maxLength": 64 },
        "valid_from": { "type": "string", "description": "YYYY-MM-DD (site's zone) or RFC 3339; default today" },
        "valid_to": { "type": ["string", "null"], "description": "exclusive end; none = open-ended" } } });
    let resident = json!({ "type": "object", "properties": {
        "id": { "type": "integer" }, "name": { "type": "string" },
        "block": { "type": "string" }, "unit": { "type": "string" },
        "apartment": { "type": "string" },
        "phone": { "type": "string", "description": "masked (+55 11 9****-5678) except in GET …/residents/{id}, which is audited" },
        "email": { "type": ["string", "null"] }, "active": { "type": "boolean" },
        "tags": { "type": "array", "items": { "type": "object", "properties": {
            "tag": { "type": "string" }, "valid_from": { "type": "string", "format": "date-time" },
            "valid_to": { "type": ["string", "null"], "format": "date-time" } } } } } });
    let data = |schema: Value| json!({ "type": "object", "properties": { "data": schema } });
    let bad = err("A field is missing, has the wrong type or an invalid value (`field` names it)");
    let paths = &mut doc["paths"];
    if let Some(params) = paths["/api/v1/sites/{slug}/sessions"]["get"]["parameters"].as_array_mut()
    {
        params.extend([
            json!({ "name": "charger", "in": "query", "schema": { "type": "string" },
                    "description": "charger uuid" }),
            json!({ "name": "resident", "in": "query", "schema": { "type": "integer" },
                    "description": "resident id" }),
            json!({ "name": "apartment", "in": "query", "schema": { "type": "integer" },
                    "description": "apartment id (sessions of its current residents)" }),
        ]);
    }
    paths["/api/v1/sites/{slug}/residents"] = json!({
        "get": {
            "summary": "Residents (phones masked); `q` searches name, apartment and tag",
            "security": auth, "parameters": [slug, { "name": "q", "in": "query", "schema": { "type": "string", "maxLength": 100 } }],
            "responses": { "200": ok("Residents", data(json!({ "type": "array", "items": resident }))),
                "400": err("A bad query parameter"), "401": err("Not logged in"),
                "404": err("No such site, or not yours") } },
        "post": {
            "summary": "Create a resident with tags, atomically (audited)",
            "security": auth, "parameters": [slug],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["name", "block", "unit", "phone"], "properties": {
                    "name": { "type": "string" }, "block": { "type": "string" },
                    "unit": { "type": "string" },
                    "phone": { "type": "string", "description": "+55 DDD number" },
                    "email": { "type": ["string", "null"] },
                    "tags": { "type": "array", "items": tag_grant } } } } } },
            "responses": { "201": ok("Created", data(resident.clone())),
                "401": err("Not logged in"), "403": err("Cross-site request"),
                "404": err("No such site, or not yours"),
                "409": err("A tag already has an owner then (`field` is tags[i].tag; nothing stored)"),
                "413": err("Body over 64 KiB"), "415": err("Not JSON"), "422": bad.clone() } }
    });
    paths["/api/v1/sites/{slug}/residents/{id}"] = json!({
        "get": {
            "summary": "One resident with the full phone and every tag interval (audited)",
            "security": auth, "parameters": [slug, id],
            "responses": { "200": ok("Resident", data(resident.clone())),
                "401": err("Not logged in"), "404": err("No such resident, site, or not yours") } },
        "patch": {
            "summary": "Change name, apartment, phone, e-mail or active (audited)",
            "security": auth, "parameters": [slug, id],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "properties": {
                    "name": { "type": "string" }, "block": { "type": "string" },
                    "unit": { "type": "string" }, "phone": { "type": "string" },
                    "email": { "type": ["string", "null"] }, "active": { "type": "boolean" } } } } } },
            "responses": { "200": ok("Updated", data(resident)),
                "401": err("Not logged in"), "404": err("No such resident, site, or not yours"),
                "422": bad.clone() } }
    });
    paths["/api/v1/sites/{slug}/residents/{id}/tags"] = json!({ "post": {
        "summary": "Give the resident a tag from a date (audited; clears it from the unknown-tag inbox)",
        "security": auth, "parameters": [slug, id],
        "requestBody": { "required": true, "content": { "application/json": { "schema": tag_grant } } },
        "responses": { "201": ok("The resident's tag intervals", data(json!({ "type": "array" }))),
            "401": err("Not logged in"), "404": err("No such resident, site, or not yours"),
            "409": err("The tag already has an owner then (the message names them)"),
            "422": bad.clone() } } });
    paths["/api/v1/sites/{slug}/unknown-tags"] = json!({ "get": {
        "summary": "Tags seen on chargers with no owner, not yet assigned",
        "security": auth, "parameters": [slug],
        "responses": { "200": ok("Unknown tags", data(json!({ "type": "array", "items": {
            "type": "object", "properties": {
                "tag": { "type": "string" }, "first_seen": { "type": "string", "format": "date-time" },
                "last_seen": { "type": "string", "format": "date-time" },
                "charger_uuid": { "type": ["string", "null"] }, "charger": { "type": ["string", "null"] },
                "session_id": { "type": ["integer", "null"] }, "seen_count": { "type": "integer" } } } }))),
            "401": err("Not logged in"), "404": err("No such site, or not yours") } } });
    paths["/api/v1/sites/{slug}/unknown-tags/{tag}/assign"] = json!({ "post": {
        "summary": "Assign an unknown tag to an existing resident from a date (audited)",
        "security": auth, "parameters": [slug, tag],
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["resident_id"], "properties": {
                "resident_id": { "type": "integer" },
                "valid_from": { "type": "string", "description": "YYYY-MM-DD or RFC 3339; default today" } } } } } },
        "responses": { "201": ok("Assigned", data(json!({ "type": "object" }))),
            "401": err("Not logged in"), "404": err("Not in the inbox, no such site, or not yours"),
            "409": err("The tag already has an owner then"), "422": bad } } });
}
