{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "WmmKNdftwT6PymhnNM4AptlwMtNVf5mwRwCstcpqm1EWviEZbHWD1Qsv1q5w5f8NZBuJ2+8Dn9SReNiGmf8ZCw=="
}
