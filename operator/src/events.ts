// The operator's Events go through lib/kube's recorder (deduplicated, aggregated, rate-limited as
// client-go's); this module keeps the import path the controllers use.
export { EventRecorder, type EventTarget, type EventType } from "../../lib/kube/events.js";
