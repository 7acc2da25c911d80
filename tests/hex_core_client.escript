#!/usr/bin/env escript
%%! -noinput
%% A Hex client made of the hex_core library that Debian's rebar3 bundles (its r3_hex_* modules):
%% the code rebar3 fetches packages with, and the same library mix's Hex client vendors for
%% publishing. tests/hexcore.py runs it as
%%
%%     escript hex_core_client.escript EBIN REQUEST RESPONSE
%%
%% EBIN is the folder holding the r3_hex_* beams (unpacked from /usr/bin/rebar3 by the test),
%% REQUEST a file of term_to_binary(#{<<"op">> => ..., ...}); the result goes to RESPONSE as
%% term_to_binary(Result). Only fixed, known keys are turned into atoms.

main([Ebin, RequestFile, ResponseFile]) ->
    true = code:add_patha(Ebin),
    {ok, _} = application:ensure_all_started(inets),
    {ok, _} = application:ensure_all_started(ssl),
    {ok, Bin} = file:read_file(RequestFile),
    Request = binary_to_term(Bin),
    Result = try run(Request)
             catch Class:Reason:Stack -> {crash, Class, iolist_to_binary(io_lib:format("~p ~p", [Reason, Stack]))}
             end,
    ok = file:write_file(ResponseFile, term_to_binary(Result)).

%% -- tarballs ----------------------------------------------------------------------------------

run(#{<<"op">> := <<"create">>, <<"metadata">> := Metadata, <<"files">> := Files, <<"out">> := Out}) ->
    case r3_hex_tarball:create(Metadata, [{binary_to_list(N), C} || {N, C} <- maps:to_list(Files)]) of
        {ok, #{tarball := Tarball, inner_checksum := Inner, outer_checksum := Outer}} ->
            ok = file:write_file(Out, Tarball),
            {ok, #{<<"inner_checksum">> => Inner, <<"outer_checksum">> => Outer}};
        Other ->
            Other
    end;
run(#{<<"op">> := <<"unpack">>, <<"path">> := Path}) ->
    {ok, Tarball} = file:read_file(Path),
    case r3_hex_tarball:unpack(Tarball, memory) of
        {ok, #{inner_checksum := Inner, outer_checksum := Outer, metadata := Metadata, contents := Contents}} ->
            {ok, #{<<"inner_checksum">> => Inner, <<"outer_checksum">> => Outer, <<"metadata">> => Metadata,
                   <<"files">> => [list_to_binary(Name) || {Name, _} <- Contents]}};
        Other ->
            Other
    end;

%% -- the repository: registry files verified with the public key, origin checked ------------

run(#{<<"op">> := <<"repo">>, <<"call">> := Call, <<"config">> := Config} = Request) ->
    C = config(Config),
    case Call of
        <<"names">> -> r3_hex_repo:get_names(C);
        <<"versions">> -> r3_hex_repo:get_versions(C);
        <<"package">> -> r3_hex_repo:get_package(C, maps:get(<<"name">>, Request));
        <<"tarball">> ->
            case r3_hex_repo:get_tarball(C, maps:get(<<"name">>, Request), maps:get(<<"version">>, Request)) of
                {ok, {200, _Headers, Tarball}} ->
                    ok = file:write_file(maps:get(<<"out">>, Request), Tarball),
                    {ok, 200};
                Other ->
                    Other
            end
    end;

%% -- the HTTP API, as `mix hex.publish`, `hex.retire`, `hex.organization key` call it --------

run(#{<<"op">> := <<"api">>, <<"call">> := Call, <<"config">> := Config} = Request) ->
    C = config(Config),
    Arg = fun(Key) -> maps:get(Key, Request) end,
    case Call of
        <<"me">> -> r3_hex_api_user:me(C);
        <<"publish">> ->
            {ok, Tarball} = file:read_file(Arg(<<"path">>)),
            r3_hex_api_release:publish(C, Tarball, [{replace, maps:get(<<"replace">>, Request, false)}]);
        <<"release">> -> r3_hex_api_release:get(C, Arg(<<"name">>), Arg(<<"version">>));
        <<"package">> -> r3_hex_api_package:get(C, Arg(<<"name">>));
        <<"retire">> -> r3_hex_api_release:retire(C, Arg(<<"name">>), Arg(<<"version">>), Arg(<<"params">>));
        <<"unretire">> -> r3_hex_api_release:unretire(C, Arg(<<"name">>), Arg(<<"version">>));
        <<"delete">> -> r3_hex_api_release:delete(C, Arg(<<"name">>), Arg(<<"version">>));
        <<"key_add">> -> r3_hex_api_key:add(C, Arg(<<"name">>), Arg(<<"permissions">>));
        <<"key_list">> -> r3_hex_api_key:list(C)
    end.

config(Settings) ->
    Known = [api_url, api_key, api_repository, api_organization, repo_url, repo_name, repo_key,
             repo_public_key, repo_verify, repo_verify_origin, repo_organization],
    maps:fold(fun(Key, Value, Acc) ->
                      Atom = binary_to_existing_atom(Key, utf8),
                      true = lists:member(Atom, Known),
                      Acc#{Atom => Value}
              end, r3_hex_core:default_config(), Settings).
