mod bad_input;
mod messages;
mod perms_events;
mod protocol_doc;
mod restart;
mod support;
mod tasks;
