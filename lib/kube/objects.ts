// Writes every controller makes the same way: deleting a pod (only the one we saw, by uid), deleting
// an object that may already be gone, adding and removing a finalizer without losing anyone else's.
import { isAlreadyExists, isNotFound, type KubeClient, paths } from "./client.js";

interface Meta {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    finalizers?: string[];
  };
}

/** DELETE that treats "already gone" as done. */
export async function deleteIgnoringNotFound(
  client: KubeClient,
  path: string,
  body?: unknown,
): Promise<void> {
  await client.request({ method: "DELETE", path, ...(body ? { body } : {}) }).catch((e: unknown) => {
    if (!isNotFound(e)) throw e;
  });
}

/** Deletes this pod: the uid precondition keeps a newer pod of the same name safe. */
export function deletePod(client: KubeClient, pod: Meta): Promise<void> {
  return deleteIgnoringNotFound(client, paths.pod(pod.metadata!.namespace!, pod.metadata!.name!), {
    apiVersion: "v1",
    kind: "DeleteOptions",
    preconditions: { uid: pod.metadata!.uid },
  });
}

/**
 * Adds a finalizer: a merge patch guarded by the resourceVersion the object was read at, so a
 * concurrent writer's finalizers are not lost (a stale read gets 409 and the reconcile retries).
 * Returns the object as written.
 */
export async function addFinalizer<T extends Meta>(
  client: KubeClient,
  path: string,
  object: T,
  finalizer: string,
): Promise<T> {
  if (object.metadata?.finalizers?.includes(finalizer)) return object;
  return client.request<T>({
    method: "PATCH",
    path,
    body: {
      metadata: {
        finalizers: [...(object.metadata?.finalizers ?? []), finalizer],
        resourceVersion: object.metadata?.resourceVersion,
      },
    },
    contentType: "application/merge-patch+json",
  });
}

/**
 * Removes a finalizer: a JSON patch that tests the entry it removes, so a concurrent status write
 * does not make it conflict and a concurrent change of the list makes it fail (and retry). Returns
 * the object as written, or undefined when it is gone (its last finalizer let it go).
 */
export async function removeFinalizer<T extends Meta>(
  client: KubeClient,
  path: string,
  object: T,
  finalizer: string,
): Promise<T | undefined> {
  const at = object.metadata?.finalizers?.indexOf(finalizer) ?? -1;
  if (at < 0) return object;
  const entry = `/metadata/finalizers/${at}`;
  return client
    .request<T>({
      method: "PATCH",
      path,
      body: [
        { op: "test", path: entry, value: finalizer },
        { op: "remove", path: entry },
      ],
      contentType: "application/json-patch+json",
    })
    .catch((e: unknown) => {
      if (isNotFound(e)) return undefined;
      throw e;
    });
}

/**
 * Creates an object with a POST (cheaper on the apiserver than an apply, which merges managed
 * fields), recording the field manager; when it exists already (a cache that lagged, a restart)
 * it is server-side applied instead, so the result is the same either way.
 */
export async function createOrApply<T>(
  client: KubeClient,
  collection: string,
  path: string,
  object: unknown,
  fieldManager: string,
): Promise<T> {
  try {
    return await client.request<T>({
      method: "POST",
      path: collection,
      query: { fieldManager },
      body: object,
    });
  } catch (e) {
    if (!isAlreadyExists(e)) throw e;
    return client.apply<T>(path, object, fieldManager);
  }
}
