{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "DAeblYLXBOFcI5rQltvPM89yXNskId26azU+iMvFo5J02tICGvofjCPi2gCrK3H6QGvma5sb6xk9oYMfdDuKAw=="
}
