{
 "schema": "facedepth-signature/1",
 "key": "ed25519:IqeoOAHPoCS95NLFFVB3uWN+TdFsvu3NZ6jjBHVeIwI=",
 "signature": "5YtfwC7sowe90L0E1XD3Dq0OOy6OrRZlgUrMSRXpvEUaAW1+7/vuq2BUjXt+jX8ujCaUt6uoZFV44YFgjNrqDA=="
}
