// Package crash has a test that panics.
package crash
