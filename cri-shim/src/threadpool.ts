// The size of libuv's thread pool in the shim (UV_THREADPOOL_SIZE unless the environment sets it):
// Xen calls through koffi and file system calls share it, and several run per create.
export const THREADPOOL_SIZE = 16;
