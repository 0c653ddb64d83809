-- A neutralized copy of production must never talk to Meta as the real numbers, nor accept their webhooks.
UPDATE strato_whatsapp_account
   SET access_token = NULL,
       app_secret = NULL,
       verify_token = NULL,
       token_invalid = true;
