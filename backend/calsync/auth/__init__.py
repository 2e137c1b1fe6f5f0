"""Who the user is: Microsoft tokens, sign-in links, web sign-in, the flask-login session."""
