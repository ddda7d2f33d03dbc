// Package lock will hold the coordinator's lease: Redis SET NX PX with a fencing token, and an
// in-process implementation, both passing one acceptance suite. It is not built yet.
package lock
