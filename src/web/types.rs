//! The TypeScript types of the JS API's plain objects — `Swarm.join`'s options, what the
//! methods return, each event's detail — written in `types.d.ts` and added to the generated
//! `swarmdrop.d.ts`, where the methods name them (`unchecked_return_type` /
//! `unchecked_param_type`: wasm-bindgen writes the name as given and checks nothing, so these
//! must follow the objects that `swarm.rs` and `files.rs` build: the browser test
//! `the_api_objects_have_the_fields_their_typescript_types_name` holds the real objects to the
//! fields `types.d.ts` names). `tests/types.ts` uses them, and its misuses must fail to compile:
//! `cargo xtask test` checks it with `tsc`. (The text is not in the wasm: wasm-bindgen takes the
//! custom section out.)

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS: &str = include_str!("types.d.ts");
