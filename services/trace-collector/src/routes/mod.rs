//! Thin HTTP handlers.

pub mod console;
pub mod costs;
pub mod events;
pub mod metrics;
pub mod otlp;
pub mod stream;
pub mod traces;

use helix_core::auth::Principal;
use helix_core::trace::Event;

use crate::error::CollectorError;

/// An event a caller sends, claimed for its project: a token limited to projects writes only
/// those (an event naming none gets the token's only project).
pub(crate) fn claim(caller: &Principal, event: &mut Event) -> Result<(), String> {
    if caller.projects.is_none() {
        return Ok(());
    }
    match &event.project {
        Some(p) => caller.check_project(p),
        None => match caller.sole_project() {
            Some(p) => {
                event.project = Some(p.to_owned());
                Ok(())
            }
            None => Err(format!("token {:?} is limited to projects: name one in `project`", &*caller.id)),
        },
    }
}

/// The project a read is limited to: the one asked for (which the caller must be allowed), the
/// caller's only project, or none for an unlimited caller. A caller limited to several projects
/// must name one.
pub(crate) fn read_scope(
    caller: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, CollectorError> {
    let asked = asked.filter(|p| !p.trim().is_empty());
    if caller.projects.is_none() {
        return Ok(asked);
    }
    match asked.or_else(|| caller.sole_project().map(str::to_owned)) {
        Some(p) => caller.check_project(&p).map(|()| Some(p)).map_err(CollectorError::Forbidden),
        None => Err(CollectorError::Forbidden(format!(
            "token {:?} is limited to projects: name one with ?project=",
            &*caller.id
        ))),
    }
}
