mod bad_input;
mod exactly_once;
mod messages;
mod perms_events;
mod protocol_doc;
mod restart;
mod support;
mod tasks;
