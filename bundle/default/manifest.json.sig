{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "o/njj/RQh6eTInclkHfREQ919w6PuuVJUkQgfjV6lqKdzBRIbrsmb053vtYjYsMb7ijUOk2QKKTkn/fQekRUAA=="
}
