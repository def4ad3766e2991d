//go:build wasip1

// Command badimport imports a function from a module other than WASI, which
// the plugin host must refuse at load. Built by the host tests with
//
//	GOOS=wasip1 GOARCH=wasm go build -o badimport.wasm ./plugins/testdata/badimport
package main

//go:wasmimport env host_secret
func hostSecret() int32

func main() { println(hostSecret()) }
