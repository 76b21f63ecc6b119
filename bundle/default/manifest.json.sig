{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "rE33VWW/zp+Q0WJ8l9rXfqyD55Z9wdRrzINe0qk/3lsHVtBIiPHdAVcd2o82+42z4XfhIwAb0qD5a2Kh31X5Cg=="
}
