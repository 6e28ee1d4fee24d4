//! Waiting for one of a few DOM events, with listeners owned by the waiting future.

use futures::channel::oneshot;
use gloo_events::EventListener;
use std::cell::RefCell;
use std::rc::Rc;
use web_sys::EventTarget;

/// Resolves with the name of the first of `names` that fires on `target`. The listeners are
/// added synchronously on first poll and removed when the future completes or is dropped.
pub(crate) async fn first_of(target: &EventTarget, names: &[&'static str]) -> &'static str {
    let (tx, rx) = oneshot::channel();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let _listeners: Vec<EventListener> = names
        .iter()
        .map(|&name| {
            let tx = Rc::clone(&tx);
            EventListener::once(target, name, move |_| {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(name);
                }
            })
        })
        .collect();
    // The sender lives as long as the listeners, which live until this returns.
    rx.await.unwrap_or("dropped")
}
