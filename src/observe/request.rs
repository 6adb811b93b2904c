//! Request side: the provider-held state a request refers to, for affinity routing.

use super::members::{members, string_value};
use super::StateId;

/// The state a request refers to: the first path segment that is a state id
/// (`/v1/responses/resp_abc/input_items`), else the body's top-level `previous_response_id`
/// (a string), else its `conversation` (a string, or an object with a string `id`). When a
/// key repeats, the last one counts, as in the providers' own JSON parsers. `None` when there
/// is none or the body is not a JSON object.
pub fn request_state_id(path: &str, body: Option<&[u8]>) -> Option<StateId> {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    if let Some(id) = path.split('/').find_map(StateId::parse) {
        return Some(id);
    }
    let body = std::str::from_utf8(body?).ok()?;
    let top = members(body)?;
    let last = |key: &str| top.iter().rev().find(|member| member.key == key);
    let previous = last("previous_response_id")
        .and_then(|member| string_value(member.value))
        .and_then(|id| StateId::parse(&id));
    previous.or_else(|| {
        let conversation = last("conversation")?.value;
        let id = match string_value(conversation) {
            Some(id) => id,
            None => {
                let fields = members(conversation.get())?;
                let id = fields.iter().rev().find(|member| member.key == "id")?;
                string_value(id.value)?
            }
        };
        StateId::parse(&id)
    })
}
