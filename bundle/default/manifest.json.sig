{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "XbFIzXyriZH5mOZUcxexmVIBi4X0Wb+rYQu20LiubW0V6ntZ747HQzyu2YgCDoDHkkdMNi8gETA3004lgJBBCw=="
}
