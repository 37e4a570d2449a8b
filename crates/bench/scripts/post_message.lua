-- wrk script: POSTs a message to chats 1-4 of the application whose token is in $TOKEN.
local token = os.getenv("TOKEN")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local path = "/applications/" .. token .. "/chats/" .. (n % 4 + 1) .. "/messages"
  return wrk.format(nil, path, nil, '{"body":"kalo mineru tashi pove zuban torel quisa dori monfa glepra nuos te"}')
end
