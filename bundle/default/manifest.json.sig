{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "vonxNY8r/STK5o2EfpdJUs39WnpC1HZBiBTRiEFx/CaCbKaplvm61CFgRRTRqQsX7V27z6FKGRDYnRPEa6QeAw=="
}
