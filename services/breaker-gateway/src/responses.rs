//! One Responses API call around the proxy: the request turned into Chat Completions (earlier
//! turns replayed from the store for `previous_response_id`), and the answer, whole or streamed,
//! turned back and stored for the next turn. The mapping itself is [`crate::protocol::responses`];
//! a stream is turned back inside the proxy's stream pipe (on the parsed chunks, no second
//! encoding), which hands the completed turn's output back in its final report. This is the glue
//! with the store. No actix types here.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::error::GatewayError;
use crate::protocol::TranslateError;
use crate::protocol::responses::{ResponseContext, ResponseStore, ResponsesCall, chat_to_response, to_chat};

/// A Responses call on its way through the proxy.
#[derive(Debug)]
pub struct Prepared {
    /// The Chat Completions body for the proxy.
    pub chat: Bytes,
    /// The request as it came, for deployments that serve the Responses API themselves.
    pub raw: Bytes,
    /// It continues a response the gateway did not store: only such deployments can serve it.
    pub native_only: bool,
    call: ResponsesCall,
    parent: Option<String>,
    project: String,
    store: Arc<ResponseStore>,
}

/// Reads a Responses request of `project` and turns it into Chat Completions. `native(model)`
/// says whether the model's chain has a deployment serving the Responses API itself, to which a
/// `previous_response_id` the gateway did not store is forwarded.
pub fn prepare(
    store: &Arc<ResponseStore>,
    project: &str,
    body: &Bytes,
    native: impl Fn(&str) -> bool,
) -> Result<Prepared, GatewayError> {
    let req: Value = serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    if !req.is_object() {
        return Err(GatewayError::InvalidRequest("the body must be a JSON object".to_owned()));
    }
    let parent = match req.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(GatewayError::InvalidRequest("`previous_response_id` must be a string".to_owned()));
        }
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut native_only = false;
    let history = match &parent {
        None => Vec::new(),
        Some(id) => match store.conversation(project, id) {
            Some(history) => history,
            None if native(model) => {
                native_only = true;
                Vec::new()
            }
            None => {
                return Err(GatewayError::InvalidRequest(format!(
                    "previous response {id:?} is not stored on this gateway (it keeps the {} most recent responses of each gateway process, in memory, and none with `store: false`): send the whole conversation as `input`",
                    crate::protocol::responses::MAX_STORED
                )));
            }
        },
    };
    let call = to_chat(&req, &history).map_err(|e| match e {
        TranslateError::Invalid(m) => GatewayError::InvalidRequest(m),
        TranslateError::Unsupported(m) => GatewayError::InvalidRequest(format!(
            "the Responses request cannot be served by this gateway: {m}"
        )),
    })?;
    if !call.dropped_tools.is_empty() {
        tracing::debug!(tools = ?call.dropped_tools, "hosted tools offered to a Chat deployment are left out");
    }
    let chat = Bytes::from(call.chat.to_string());
    Ok(Prepared {
        chat,
        raw: body.clone(),
        native_only,
        call,
        parent,
        project: project.to_owned(),
        store: store.clone(),
    })
}

impl Prepared {
    pub fn is_stream(&self) -> bool {
        self.call.stream
    }

    fn keep(&self, id: &str, output: Vec<Value>) {
        if !self.call.ctx.stored() {
            return;
        }
        let mut items = self.call.input_items.clone();
        items.extend(output);
        // a turn too large to keep is simply not continuable by id
        let _ = self.store.put(&self.project, id, self.parent.as_deref(), items);
    }

    /// The Responses object for a successful Chat answer (stored unless `store: false`); a
    /// passed-through answer is already one.
    pub fn answer(&self, chat: &Bytes, passthrough: bool) -> Bytes {
        if passthrough {
            return chat.clone();
        }
        let Ok(json) = serde_json::from_slice::<Value>(chat) else {
            return Bytes::copy_from_slice(chat);
        };
        let (object, output) = chat_to_response(&json, &self.call.ctx);
        self.keep(&self.call.ctx.id, output);
        Bytes::from(object.to_string())
    }

    /// What the proxy turns a translated stream back with.
    pub fn context(&self) -> ResponseContext {
        self.call.ctx.clone()
    }

    /// Keeps the turn of a completed stream (`output`, its items) unless `store: false`.
    pub fn keep_turn(&self, output: Vec<Value>) {
        self.keep(&self.call.ctx.id, output);
    }
}
